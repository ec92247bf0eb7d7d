"""The model card ``serkit info`` prints: what a bundle is, what it was trained on, how good it is."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serkit.backbones import MissingBackbone, backbone_info, encoder_path
from serkit.bundle import WEIGHTS, BundleError, read_config
from serkit.inference import onnx_file, resolve_model


#: Where a corpus's speaker's clips are, so a card can say which files to try.
SPEAKER_FILES = {"ravdess": "Actor_{}", "emodb": "{}*.wav", "cremad": "{}_*.wav", "savee": "{}_*.wav",
                 "tess": "{}_*.wav"}


def speakers_text(speakers: list[str]) -> str:
    """``["emodb/11", "ravdess/03"]`` -> ``"emodb 11*.wav; ravdess Actor_03"``: by corpus, as files."""
    by_corpus: dict[str, list[str]] = {}
    for s in speakers:
        corpus, _, speaker = s.partition("/")
        by_corpus.setdefault(corpus, []).append(SPEAKER_FILES.get(corpus, "{}").format(speaker or corpus))
    return "; ".join(f"{corpus} {', '.join(names)}" for corpus, names in by_corpus.items())


def _rooms_text(training: dict[str, Any]) -> str:
    """What a waveform model's training augmentation (its ``augment`` settings) did with rooms."""
    share = _obj(training.get("augment")).get("room_prob")
    if not isinstance(share, (int, float)) or share <= 0:
        return ""
    return f"; {share:.0%} of training clips heard in a simulated room (reverberation, babble or noise)"


def _left_out_text(test: dict[str, Any]) -> str:
    """The clips a bundle's test figures leave out (:func:`serkit.corpora.words_give_label`)."""
    n = _obj(test.get("left_out")).get("words_give_label")
    return f"; {n} more left out: their words give the emotion away" if isinstance(n, int) and n > 0 else ""


def _split_seed(tcfg: dict[str, Any]) -> Any:
    return tcfg.get("seed") if tcfg.get("split_seed") is None else tcfg.get("split_seed")


def _ensemble_text(members: list[Any], model_config: dict[str, Any]) -> str:
    kinds = {_obj(m).get("model_type") for m in _obj(model_config).get("members", [])}
    alone = ", ".join(_num(_obj(m).get("test_uar")) for m in members)
    refit = [_obj(m).get("refit_epochs") for m in members]
    again = (f", then trained again on training + validation clips for "
             f"{', '.join('no' if e is None else str(e) for e in refit)} epochs" if any(refit) else "")
    return (f"{len(members)} {'/'.join(sorted(map(str, kinds)))} models trained on this split, seeds "
            f"{', '.join(str(_obj(m).get('seed')) for m in members)}{again} (test UAR alone: {alone}); it "
            "answers with the mean of their calibrated probabilities")


def _obj(value: Any) -> dict[str, Any]:
    """A config section as a dict ({} when a hand-edited config holds something else there)."""
    return value if isinstance(value, dict) else {}


def _num(value: Any, spec: str = ".3f") -> str:
    """A number formatted by ``spec``; what is not a number is shown as it is."""
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def model_card(bundle: str | os.PathLike | None = None) -> str:
    """The card as plain text: a title line, then one ``  key  value`` line per row."""
    title, rows = model_card_rows(bundle)
    return "\n".join([title] + [f"  {key:<14} {value}" for key, value in rows])


def model_card_rows(bundle: str | os.PathLike | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The card's title and (key, value) rows, for a view that wraps values under each other."""
    folder = resolve_model(bundle)     # a folder, a shipped model's name, or None (the default)
    c = read_config(folder)
    training = _obj(c.get("training"))
    tcfg, data = _obj(training.get("config")), _obj(training.get("data"))
    test = _obj(_obj(c.get("metrics")).get("test"))
    try:      # an exported folder: the graph it serves holds the weights
        served: Path | None = onnx_file(folder, c) if c.get("onnx") else folder / WEIGHTS
    except BundleError:            # an export naming no usable file: loading it says what is wrong
        served = None
    size_mb = served.stat().st_size / 1e6 if served is not None and served.is_file() else 0.0
    # nested settings (a fine-tuned encoder's whole backbone config) would drown the card
    arch_of = lambda mc: ", ".join(f"{k}={v}" for k, v in _obj(mc).items() if not isinstance(v, dict))  # noqa: E731
    arch = arch_of(c["model_config"])
    if c["model_type"] == "ensemble":   # its members' settings, not the list of their configs
        members = c["model_config"].get("members") or [{}]
        arch = f"{len(members)} x {_obj(members[0]).get('model_type')}: " + arch_of(_obj(members[0]).get("model_config"))
    weights = f"{size_mb:.1f} MB of weights"
    backbone = c["model_config"].get("backbone") if c["model_type"] == "encoder_head" else None
    if backbone:   # the head is the bundle's; the frozen encoder it reads is most of the model
        try:
            weights = f"{size_mb:.1f} MB head + {encoder_path(backbone, folder).stat().st_size / 1e6:.1f} MB encoder"
        except (MissingBackbone, OSError):
            weights = f"{size_mb:.1f} MB head; its encoder {backbone} is not here"
    rows = [
        ("model type", f"{c['model_type']} ({weights}, bundle format {c['format_version']}, "
                       f"serkit {c.get('serkit_version', '?')})"),
        ("architecture", arch),
        ("labels", ", ".join(c["labels"])),
        ("audio", f"{c['audio']['sample_rate']} Hz mono, {c['audio']['clip_seconds']} s windows"),
        ("scoring", f"speech first ({c.get('scoring', {}).get('vad', 'auto')} speech detector; no speech: no "
                    "emotion); speech longer than a window: the mean of its 50%-overlapping windows' logits "
                    "per segment, segments weighted by duration"),
        ("calibration", f"temperature {_num(c.get('temperature', 1.0))} (fitted on the validation split)"),
    ]
    if data:
        rows += [
            ("training data", f"{', '.join(data.get('corpora', []))}: {data.get('clips')} clips, "
                              f"{data.get('speakers')} speakers, {data.get('hours')} h"),
            ("split", f"{tcfg.get('split')} (seed {_split_seed(tcfg)}; test {tcfg.get('test_size')}, "
                      f"val {tcfg.get('val_size')}); "
                      + ", ".join(f"{p} {_obj(v).get('clips')} clips/{_obj(v).get('speakers')} speakers"
                                  for p, v in _obj(data.get("parts")).items())),
        ]
        fit = training.get("head_fit")
        refit = _obj(training.get("refit"))      # a model trained in epochs, trained again (--refit-epochs)
        ensemble = _obj(training.get("ensemble")).get("members")
        if ensemble:
            rows.append(("ensemble", _ensemble_text(ensemble, c["model_config"]) + _rooms_text(training)))
        elif fit:
            rows.append(("head", f"{fit['method']}, C {fit['C']} chosen on validation"
                                 + (", then refitted on training + validation clips" if fit.get("refit") else "")
                                 + ("; each clip heard as recorded and in a simulated room (reverberation, noise)"
                                    if _obj(training.get("encoder_cache")).get("rooms") else "")
                                 + ("; a second head on speaker-centred features adapts to one voice "
                                    "(serkit predict --same-speaker)" if fit.get("speaker_head") else "")))
        else:
            rows.append(("best epoch", f"{training.get('best_epoch')} of {training.get('epochs_run')} "
                                       f"(chosen on validation {tcfg.get('monitor')} = {training.get('best_score', 0):.3f})"
                                       + (f", then trained again for {refit.get('epochs')} epochs on training + "
                                          "validation clips" if refit else "")
                                       + _rooms_text(training)))
        if tcfg.get("split") == "random":
            rows.append(("WARNING", "random split: test speakers were also in training, metrics are inflated"))
        elif data.get("test_speakers"):
            rows.append(("never heard", f"{speakers_text(data['test_speakers'])} (held-out test speakers: "
                                        "try their clips for a fair first impression)"))
            if data.get("val_speakers") and fit and fit.get("refit"):
                rows.append(("validation", f"{speakers_text(data['val_speakers'])} (validation speakers: they "
                                           "chose C and the temperature, then joined the training)"))
            elif data.get("val_speakers") and refit:
                rows.append(("validation", f"{speakers_text(data['val_speakers'])} (validation speakers: they "
                                           "chose the epoch and the temperature, then joined the training)"))
            elif data.get("val_speakers"):
                rows.append(("not trained on", f"{speakers_text(data['val_speakers'])} (validation speakers: "
                                               "they chose the epoch and the temperature)"))
    if test:
        rows.append(("test metrics", f"accuracy {_num(test.get('accuracy'))}, macro-F1 {_num(test.get('macro_f1'))}, "
                                     f"UAR {_num(test.get('uar'))}, ECE {_num(test.get('ece', float('nan')))} "
                                     f"({test.get('n')} clips, "
                                     f"{'speakers also in training' if tcfg.get('split') == 'random' else 'held-out speakers'}"
                                     f"{_left_out_text(test)})"))
        for corpus, m in _obj(test.get("per_corpus")).items():
            m = _obj(m)
            rows.append(("", f"{corpus}: accuracy {_num(m.get('accuracy'))}, UAR {_num(m.get('uar'))} ({m.get('n')} clips)"))
        flags = _obj(test.get("uncertain"))
        if flags:
            pct = lambda v: _num(100 * v, ".0f") + " %" if isinstance(v, (int, float)) else "-"  # noqa: E731
            rows.append(("uncertain", f"{pct(flags.get('share'))} of the test answers are flagged uncertain; "
                                      f"right {pct(flags.get('accuracy_flagged'))} of the time when flagged, "
                                      f"{pct(flags.get('accuracy_unflagged'))} otherwise"))
    if backbone:
        info = backbone_info(backbone)
        rows.append(("encoder", f"{backbone}: {info.get('source', 'inside the bundle')} hidden layers 0-"
                                f"{info.get('layers', 1) - 1}, {info.get('precision', '?')} ONNX"
                                + (" (OpenAI's weights, MIT licence)" if "whisper" in str(info.get("source")) else "")))
    if c.get("licence"):
        rows.append(("licence", c["licence"] + " Speech detection: Silero VAD (MIT licence). Telling voices apart "
                     "(--speakers voice): Resemblyzer's voice encoder (Apache 2.0)."))
    return f"Model card: {folder}", rows

"""``serkit evaluate``: score a bundle on a manifest's split, the same split it was trained with."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serkit.config import TrainConfig
from serkit.audio import decode_all
from serkit.evaluation import evaluate_logits
from serkit.inference import Predictor
from serkit.manifest import Utterance, read_manifest
from serkit.safety import check_output_folder
from serkit.splits import PARTS


RANDOM_SPLIT = ("the model was trained on a random split: its test clips' speakers were in its training too, "
                "so no figure here says how it does on voices it never heard")


def evaluate_bundle(predictor: Predictor, manifest: str | os.PathLike, part: str = "test",
                    out: str | os.PathLike | None = None, progress: bool = True,
                    force: bool = False, same_speaker: bool = False,
                    card: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate ``predictor`` on the ``part`` (train/val/test, or ``all``) of ``manifest``;
    ``same_speaker``: each speaker's clips answered as one voice (see :func:`evaluate_predictor`).
    ``card``: the bundle folder of ``predictor``, whose card's test figures (``metrics.test`` of
    its config.json) are replaced by these, so that a card shows what the bundle as it is scores
    (an ONNX int8 export of a model trained in PyTorch, a model scored after a change to the
    scorer); the test part only, answered clip by clip.

    For speaker and corpus splits the parts are the speakers the bundle records as held out
    (test, validation; the rest is train), so any manifest holding some of them can be scored (a
    note says how many are there; none is a ValueError); a random split is rebuilt from the
    protocol, seeds and sizes stored in the bundle. The report says which model and manifest it
    scored, with notes when its clips' speakers trained the model (``all``, ``train``, a refitted
    model's ``val``, a random split). ``out`` is checked before any work (see
    :func:`serkit.evaluation.evaluate_logits` and ``force``).
    """
    if same_speaker:
        predictor.check_can_adapt()          # before any work
    if card is not None and (part != "test" or same_speaker):
        raise ValueError("--card records the held-out test figures: use it with --split test, without --same-speaker")
    if out is not None:
        check_output_folder(out, "eval", force=force, inputs=[manifest], flag="--out")
        run = Path(out).parent          # a training run's own report is of its own model
        if Path(out).name == "eval" and (run / "bundle" / "config.json").is_file() and not force:
            from serkit.bundle import read_config
            if read_config(run / "bundle") != predictor.config:
                raise ValueError(f"--out {out} holds the report of the run {run} on its own model; evaluating "
                                 "another model there would replace it: write elsewhere, or pass --force")
    utts = [u for u in read_manifest(manifest) if u.emotion in predictor.labels]
    if not utts:
        raise ValueError(f"{manifest}: no clip has an emotion the model knows ({', '.join(predictor.labels)})")
    if part != "all" and part not in PARTS:
        raise ValueError(f"unknown split part {part!r}; choose one of: {', '.join(PARTS)}, all")
    utts, notes = select_part(predictor, utts, part, manifest)
    if card is not None:                     # a card's figures are of all its own test clips, nothing else
        card = check_card(Path(card))
        others = [n for n in notes if n != RANDOM_SPLIT]    # a random split's card is of its own test clips
        if others:
            raise ValueError(f"--card writes the model's own test figures, which these would not be: {others[0]}")
    title = f"{part}, each speaker's clips as one voice" if same_speaker else part
    about = {"model": predictor.name, "manifest": str(manifest), "notes": notes}
    report = evaluate_predictor(predictor, utts, Path(out) if out else None, title=title, progress=progress,
                                force=force, same_speaker=same_speaker, about=about)
    if card is not None:
        record_on_card(Path(card), predictor, report)
    return report


def check_card(folder: Path) -> Path:
    """Before any work: the bundle folder whose card --card rewrites (an export's folder, not one of
    its files), and that its config.json can be replaced there."""
    from serkit.bundle import CONFIG
    from serkit.safety import check_writable

    if not (folder.is_dir() and (folder / CONFIG).is_file()):
        raise ValueError(f"--card {folder}: give the bundle's folder (with its config.json), not a file of it")
    check_writable(folder / CONFIG, "--card")
    return folder


def record_on_card(folder: Path, predictor: Predictor, report: dict[str, Any]) -> None:
    """Write ``report``'s test figures into the card of the bundle at ``folder`` (atomically; the
    rest of its config.json as it was), after checking it is the bundle that was scored."""
    from serkit.bundle import read_config
    from serkit.evaluation import card_metrics
    from serkit.safety import CONFIG, atomic_write_text, to_json

    config = read_config(folder)
    if config != predictor.config:
        raise ValueError(f"--card {folder}: not the bundle that was scored")
    config["metrics"] = {**config.get("metrics", {}), "test": card_metrics(report)}
    atomic_write_text(folder / CONFIG, to_json(config, indent=2, default=str) + "\n")


def select_part(predictor: Predictor, utts: list[Utterance], part: str, manifest) -> tuple[list[Utterance], list[str]]:
    """The clips of ``utts`` in ``part`` of the model's split (see :func:`evaluate_bundle`), and
    notes on what the figures will mean."""
    training = predictor.config.get("training", {})
    cfg = TrainConfig.from_dict(training.get("config", {}))
    held = {p: training.get("data", {}).get(f"{p}_speakers") for p in ("test", "val")}
    notes = []
    if cfg.split == "random" or None in held.values():
        if part != "all":
            from serkit.splits import split_for
            utts = [u for u, p in zip(utts, split_for(utts, cfg)) if p == part]
        if cfg.split == "random":
            notes.append(RANDOM_SPLIT)
        return utts, notes
    which = {g: p for p in ("test", "val") for g in held[p]}
    refitted = cfg.refit if cfg.model == "encoder_head" else cfg.refit_epochs
    corpora = set(training.get("data", {}).get("corpora", [])) or None     # None: not recorded

    def trained_on(u: Utterance) -> bool:     # a training speaker (of a corpus the model trained on)
        return which.get(u.group, "train") == "train" and (corpora is None or u.corpus in corpora)

    def heard(u: Utterance) -> bool:          # ... or a validation speaker who joined the training
        return trained_on(u) or (refitted and which.get(u.group) == "val")

    if part == "train":
        utts = [u for u in utts if trained_on(u)]
    elif part != "all":
        utts = [u for u in utts if which.get(u.group) == part]
    if part in ("test", "val"):
        present, named = {u.group for u in utts}, held[part]
        if not present:
            raise ValueError(f"{manifest}: none of the model's {len(named)} {part} speakers is in it ("
                             f"{', '.join(named[:4])}{'…' if len(named) > 4 else ''}); pass a manifest holding "
                             "them, or --split all")
        recorded = training.get("data", {}).get("parts", {}).get(part, {}).get("clips")
        if len(present) < len(named):
            notes.append(f"{len(present)} of the model's {len(named)} {part} speakers are in {manifest}: "
                         "the figures are theirs alone")
        elif recorded is not None and recorded != len(utts):
            notes.append(f"{manifest} holds {len(utts)} clips of the model's {part} speakers where its training "
                         f"manifest held {recorded}: another manifest, whose clips these figures are")
    trained = sum(map(heard, utts))
    if trained:
        joined = refitted and any(which.get(u.group) == "val" for u in utts)
        notes.append(f"{trained} of these {len(utts)} clips are of speakers the model was trained on"
                     + (" (its validation speakers joined its training)" if joined else "")
                     + ": these figures flatter it")
    return utts, notes


def evaluate_predictor(predictor: Predictor, utts: list[Utterance], out: Path | None = None, title: str = "test",
                       progress: bool = True, force: bool = False, same_speaker: bool = False,
                       about: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of ``predictor`` on ``utts`` through the same speech-first scoring that
    ``serkit predict`` and the web app use (a clip without speech counts as a wrong answer).
    ``same_speaker``: the clips of each speaker (corpus and speaker) are answered as one voice,
    as ``serkit predict --same-speaker --speakers manifest`` answers them."""
    waves = decode_all(utts, predictor.sample_rate, progress=progress)
    if same_speaker:
        unknown = sum(1 for u in utts if u.speaker == "unknown")
        if unknown:   # they would all be taken for one voice
            raise ValueError(f"--same-speaker answers each speaker's clips as one voice, but the manifest names "
                             f"no speaker for {unknown} of {len(utts)} clips (its Speaker column)")
        analyses: list = [None] * len(utts)
        for group in {u.group: None for u in utts}:
            rows = [i for i, u in enumerate(utts) if u.group == group]
            for i, a in zip(rows, predictor.analyse_same_speaker([waves[i] for i in rows])):
                if isinstance(a, Exception):
                    raise a
                analyses[i] = a
    else:
        analyses = predictor.analyse(waves)
    logits, none = predictor.scorer.as_logits(analyses)
    return evaluate_logits(utts, logits, predictor.labels, predictor.temperature, out, title=title,
                           no_speech=none, force=force, uncertain_below=predictor.scorer.uncertain_below,
                           uncertain_margin=predictor.scorer.uncertain_margin, about=about)

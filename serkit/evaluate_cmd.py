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
from serkit.splits import PARTS, split


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

    The split is rebuilt from the protocol, seed and sizes stored in the bundle; for speaker
    and corpus splits the held-out speakers must be the ones the bundle records, otherwise the
    manifest is not the one the model was trained on and a ValueError says so. ``out`` is
    checked before any work (see :func:`serkit.evaluation.evaluate_logits` and ``force``).
    """
    if same_speaker:
        predictor.check_can_adapt()          # before any work
    if card is not None and (part != "test" or same_speaker):
        raise ValueError("--card records the held-out test figures: use it with --split test, without --same-speaker")
    if out is not None:
        check_output_folder(out, "eval", force=force, inputs=[manifest], flag="--out")
    utts = [u for u in read_manifest(manifest) if u.emotion in predictor.labels]
    if not utts:
        raise ValueError(f"{manifest}: no clip has an emotion the model knows ({', '.join(predictor.labels)})")
    if part != "all":
        if part not in PARTS:
            raise ValueError(f"unknown split part {part!r}; choose one of: {', '.join(PARTS)}, all")
        training = predictor.config.get("training", {})
        cfg = TrainConfig.from_dict(training.get("config", {}))
        parts = split(utts, cfg.split, test_size=cfg.test_size, val_size=cfg.val_size, seed=cfg.seed,
                      test_corpus=cfg.test_corpus)
        expected = training.get("data", {}).get(f"{part}_speakers")
        got = sorted({u.group for u, p in zip(utts, parts) if p == part})
        if cfg.split != "random" and part in ("test", "val") and expected is not None and got != expected:
            raise ValueError(
                f"{manifest}: its {part} speakers ({', '.join(got[:4])}…) are not the ones the model "
                f"was trained with ({', '.join(expected[:4])}…); pass the training manifest or --split all")
        utts = [u for u, p in zip(utts, parts) if p == part]
    title = f"{part}, each speaker's clips as one voice" if same_speaker else part
    report = evaluate_predictor(predictor, utts, Path(out) if out else None, title=title, progress=progress,
                                force=force, same_speaker=same_speaker)
    if card is not None:
        record_on_card(Path(card), predictor, report)
    return report


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


def evaluate_predictor(predictor: Predictor, utts: list[Utterance], out: Path | None = None, title: str = "test",
                       progress: bool = True, force: bool = False, same_speaker: bool = False) -> dict[str, Any]:
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
                           uncertain_margin=predictor.scorer.uncertain_margin)

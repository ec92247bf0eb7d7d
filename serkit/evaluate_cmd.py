"""``serkit evaluate``: score a bundle on a manifest's split, the same split it was trained with."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serkit.data import DEFAULT_CACHE, decode_all
from serkit.evaluation import evaluate_logits
from serkit.inference import Predictor
from serkit.manifest import read_manifest
from serkit.safety import check_output_folder
from serkit.splits import PARTS
from serkit.training import TrainConfig, split_for


def evaluate_bundle(predictor: Predictor, manifest: str | os.PathLike, part: str = "test",
                    out: str | os.PathLike | None = None, progress: bool = True,
                    force: bool = False) -> dict[str, Any]:
    """Evaluate ``predictor`` on the ``part`` (train/val/test, or ``all``) of ``manifest``.

    The split is rebuilt from the protocol, seed and sizes stored in the bundle; for speaker
    and corpus splits the held-out speakers must be the ones the bundle records, otherwise the
    manifest is not the one the model was trained on and a ValueError says so. ``out`` is
    checked before any work (see :func:`serkit.evaluation.evaluate_logits` and ``force``).
    """
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
        parts = split_for(utts, cfg)
        expected = training.get("data", {}).get(f"{part}_speakers")
        got = sorted({u.group for u, p in zip(utts, parts) if p == part})
        if cfg.split != "random" and part in ("test", "val") and expected is not None and got != expected:
            raise ValueError(
                f"{manifest}: its {part} speakers ({', '.join(got[:4])}…) are not the ones the model "
                f"was trained with ({', '.join(expected[:4])}…); pass the training manifest or --split all")
        utts = [u for u, p in zip(utts, parts) if p == part]
    waves = decode_all(utts, predictor.sample_rate, DEFAULT_CACHE / "waveforms", progress=progress)
    return evaluate_logits(utts, predictor.logits(waves), predictor.labels, predictor.temperature,
                           Path(out) if out else None, title=part, force=force)

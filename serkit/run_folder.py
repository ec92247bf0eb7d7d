"""A training run's folder: what may be trained into, what a run writes, and its checkpoints.

A run folder carries serkit's mark (``.serkit.json``, see :mod:`serkit.safety`). Training into
a folder that holds a run needs ``resume`` (continue it) or ``force`` (start over: the previous
run's files, and nothing else, are removed first, so none of its checkpoints, reports or bundle
can pass for the new run's); a non-empty folder serkit did not write needs ``force`` (only
serkit's file names are written there). Lightning's ``last.ckpt`` is written atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from serkit.config import RUN_ONLY, TrainConfig
from serkit.safety import (MARKER, OutputError, atomic_file, check_output_folder, folder_kind, mark_folder,
                           remove_owned, write_json)

#: The best epoch's weights of a run (relative to the run folder): safetensors, never unpickled. With
#: ``--refit-epochs`` they are the first run's, the model before the validation speakers joined.
BEST_WEIGHTS = "checkpoints/best.safetensors"
#: What a run writes (relative to the run folder), besides ``bundle/`` and ``eval/``: the files
#: ``train(force=True)`` removes before it starts over. Other files in the folder are left alone.
RUN_FILES = ("config.json", "split.csv", "cache.json", "metrics.csv", "curves.png", "checkpoints/last.ckpt",
             BEST_WEIGHTS, "checkpoints/best.json", "logs/metrics.csv", "logs/hparams.yaml",
             "refit_logs/metrics.csv", "refit_logs/hparams.yaml")   # --refit-epochs
#: What a run that got as far as training leaves: a folder holding none of these holds a run that
#: failed before its first epoch (its settings and split only), which a new run simply replaces.
STARTED = ("checkpoints/last.ckpt", BEST_WEIGHTS, "metrics.csv", "logs/metrics.csv",
           "bundle", "eval")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints (``last.ckpt``) written to a temporary file beside the target and
    renamed into place: a kill mid-write leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_file(path, "wb") as fh:
            torch.save(checkpoint, fh)


def check_run_folder(out: Path, inputs: list[str | os.PathLike], resume: bool, force: bool,
                     resumable: bool = True) -> bool:
    """Check, before any work, that a run may be written to ``out``: a new or empty folder; the
    run to continue (``resume``); a run that never trained; with ``force``, a folder that holds a
    run (started over) or other files (left alone). Anything else raises :class:`OutputError`
    (FileNotFoundError for a ``resume`` with no run). Returns whether the previous run's files
    must go first (pass it to :func:`claim_run_folder`). ``resumable``: the command has --resume
    (``serkit ensemble`` has not), which the refusal then suggests."""
    if rank_zero_only.rank != 0:   # DDP's other processes start after (or beside) rank 0's checks
        return False
    kind = folder_kind(out) if out.is_dir() else None
    if resume:
        if kind != "run" or not (out / "config.json").is_file():
            raise FileNotFoundError(f"--resume: no run to resume in {out} (no serkit run's config.json)")
    else:
        if kind == "run" and not force and any((out / name).exists() for name in STARTED):
            raise OutputError(f"--out {out} holds a serkit run; " + ("pass --resume to continue it, " if resumable else "")
                              + "pass --force to start it over (its files are replaced), or choose a new folder")
        check_output_folder(out, "run", force=force, inputs=inputs, flag="--out")
    # where the run's bundle and report go at the end: never a serkit folder of another kind
    check_output_folder(out / "bundle", "bundle", force=True, flag="--out")
    check_output_folder(out / "eval", "eval", force=True, flag="--out")
    return not resume and (force or kind == "run")


def claim_run_folder(out: Path, clean: bool) -> None:
    """Create ``out`` with serkit's mark (after :func:`check_run_folder`); with ``clean`` first
    remove the previous run's files, and nothing else, so nothing of it (a checkpoint, a report,
    a bundle) can pass for the new run's."""
    if rank_zero_only.rank != 0:
        return
    if clean:
        from serkit.bundle import BUNDLE_FILES
        from serkit.evaluation import EVAL_FILES
        remove_owned(out, [*RUN_FILES, *(f"bundle/{n}" for n in BUNDLE_FILES),
                           *(f"eval/{n}" for n in (*EVAL_FILES, MARKER))])
    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, "run")


#: Cache counters of a frozen encoder's run: the run's, written to its cache.json, not the bundle
CACHE_COUNTERS = ("hits", "misses", "windows_computed", "windows_cached")


def keep_cache_counts(out: Path, train_info: dict) -> dict:
    """``train_info`` without the counters of its encoder or embedding cache, which go to the run
    folder's ``cache.json``: how many windows a run computed is the run's, not the model's, so a
    retrain on a warm cache gives the same bundle, to the byte."""
    info, counts = dict(train_info), {}
    for key in ("encoder_cache", "embedding_cache"):
        if key in info:
            note = dict(info[key])
            counts[key] = {k: note.pop(k) for k in CACHE_COUNTERS if k in note}
            info[key] = note
    if counts:
        write_json(out / "cache.json", counts)
    return info


def prepend_metrics(earlier: str, path: Path) -> None:
    """Put the rows of an interrupted run's metrics.csv (text ``earlier``) before those of its
    resumed run in ``path``, keeping only the epochs the resumed run did not log again."""
    import csv
    import io

    old = list(csv.DictReader(io.StringIO(earlier)))
    new = list(csv.DictReader(open(path, encoding="utf-8"))) if path.is_file() else []
    first = min((int(r["epoch"]) for r in new), default=None)
    rows = [r for r in old if first is None or int(r["epoch"]) < first] + new
    keys = sorted({k for r in rows for k in r})
    with atomic_file(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def fit_without_validation(module: Any, loader: Any, cfg: Any, epochs: int, out: Path) -> None:
    """Train ``module`` on ``loader`` for ``epochs`` epochs, no validation and no checkpoints, on
    one device, its loss logged to ``out/refit_logs/`` (``--refit-epochs``: the epoch count was
    chosen by the run before)."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from serkit.callbacks import ProgressBar, quiet_fit

    with quiet_fit():
        trainer = L.Trainer(max_epochs=epochs, accelerator=cfg.accelerator, devices=1, default_root_dir=out,
                            logger=CSVLogger(out, name="", version="refit_logs"), enable_checkpointing=False,
                            limit_val_batches=0, enable_progress_bar=cfg.progress, enable_model_summary=False,
                            callbacks=[ProgressBar()] if cfg.progress else [],
                            log_every_n_steps=10, num_sanity_val_steps=0, deterministic=False)
        trainer.fit(module, loader)


def resumed_config(out: Path, cfg: TrainConfig | None) -> TrainConfig:
    """The run's own settings (its config.json), with ``cfg``'s of this machine (:data:`RUN_ONLY`);
    ValueError when ``cfg`` differs from the run in anything else (its emotions aside, which a run
    stores resolved)."""
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    if cfg is None:
        return saved
    changed = [f"{f.name} {getattr(cfg, f.name)} (the run: {getattr(saved, f.name)})" for f in fields(TrainConfig)
               if f.name not in (*RUN_ONLY, "emotions") and getattr(cfg, f.name) != getattr(saved, f.name)]
    if changed:
        raise ValueError(f"resume: {out} goes on with its own settings ({out / 'config.json'}); given: "
                         f"{'; '.join(changed)}. Drop them, or start over (--force)")
    return replace(saved, **{k: getattr(cfg, k) for k in RUN_ONLY})

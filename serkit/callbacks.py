"""Lightning callbacks of serkit's training: the best epoch's weights kept without pickling
(:class:`BestWeights`), and an exponential moving average of the weights (:class:`AveragedWeights`,
``--ema``) that validation, the best-epoch choice and the bundle read instead of the raw weights;
leaving the process group of a run on several devices (:func:`leave_process_group`); and
Lightning's output kept to what is about the run (:func:`quiet_fit`, :class:`ProgressBar`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar, WeightAveraging
from safetensors.torch import load_file, save
from torch.optim.swa_utils import get_ema_multi_avg_fn

from serkit.safety import atomic_write_bytes, write_json


class BestWeights(Callback):
    """Keeps the best epoch's weights (by the monitored validation metric) in memory and in
    ``best.safetensors``, so the bundle is the best epoch, restored without unpickling anything.
    Only a resumed run (``resume``) starts from the best saved so far."""

    def __init__(self, path: Path, monitor: str, resume: bool = False):
        self.path, self.monitor = path, monitor
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        if resume and path.is_file():  # resumed run: the best so far survives the restart
            self.state = load_file(str(path))
            meta = json.loads((path.with_suffix(".json")).read_text())
            self.best_score, self.best_epoch = meta["score"], meta["epoch"]

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
            if trainer.is_global_zero:   # the weights first: best.json never names weights not on disk
                atomic_write_bytes(self.path, save(self.state))
                write_json(self.path.with_suffix(".json"), {"score": score, "epoch": self.best_epoch})


class AveragedWeights(WeightAveraging):
    """An exponential moving average of the model's weights and BatchNorm statistics, updated after
    every optimiser step (Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging`, as
    Polyak averaging / "EMA" in image and audio recipes): each step the average moves ``1 - decay``
    of the way to the current weights, so it spans about ``1 / (1 - decay)`` steps.

    Validation scores the averaged weights, and they stay in the model until every callback's
    ``on_validation_end`` before this one has run: list :class:`BestWeights` (and early
    stopping) before it and the checkpoint callback after it, so the best epoch kept is the
    averaged one while ``last.ckpt`` holds both (Lightning's own resume format for averaging).
    The swap is Lightning's own (``_swap_models``, a private method: lightning is pinned in
    constraints.txt, and tests/test_training_options.py checks the average by hand).
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))

    def on_validation_epoch_end(self, trainer, pl_module):
        """Lightning swaps back here, before the epoch's metrics reach the other callbacks; that
        is done in :meth:`on_validation_end` instead."""

    def on_validation_end(self, trainer, pl_module):
        if self._average_model is not None:
            self._swap_models(pl_module)


def leave_process_group(rank_zero: bool = True) -> bool:
    """Leave the distributed process group, if one was joined (a run on several devices), and
    return ``rank_zero`` (whether this process goes on to write the run's results). Lightning does
    not destroy the group, and gloo's threads still alive at interpreter exit abort the process
    (SIGABRT, "terminate called without an active exception") after the work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return rank_zero


class ProgressBar(RichProgressBar):
    """Lightning's progress bar without the logger's version (``v_num: logs``: serkit names the
    logs folder, not a version)."""

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


#: Lightning's lines that are not about the run: a product tip, and how it counts the batches.
NOT_ABOUT_THE_RUN = ("\N{ELECTRIC LIGHT BULB} Tip:", "Loading `train_dataloader` to estimate")
#: Its warnings a user cannot act on: the data is in memory (few loader workers is right), the
#: loss is logged per epoch (a logging interval longer than an epoch loses nothing), a
#: deprecation inside Lightning itself, and no validation where none is meant (``--refit-epochs``).
UNACTIONABLE = (".*does not have many workers.*", ".*smaller than the logging interval.*",
                ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*", ".*no `val_dataloader`.*")


@contextlib.contextmanager
def quiet_fit() -> Iterator[None]:
    """Around ``trainer.fit``: Lightning's :data:`NOT_ABOUT_THE_RUN` lines and
    :data:`UNACTIONABLE` warnings left out; everything else it says (devices, why it stopped) stays."""
    def about_the_run(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOT_ABOUT_THE_RUN)

    logs = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero",
                                             "lightning.fabric.utilities.rank_zero")]
    for log in logs:
        log.addFilter(about_the_run)
    try:
        with warnings.catch_warnings():
            for pattern in UNACTIONABLE:
                warnings.filterwarnings("ignore", pattern)
            yield
    finally:
        for log in logs:
            log.removeFilter(about_the_run)

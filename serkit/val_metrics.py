"""Validation during training: each clip scored as the one scorer scores it, and metrics from
torchmetrics, whose states reduce across processes, so a run on several devices scores its
validation split as one process would.

A validation clip's windows (all windows of its scoring units, :class:`serkit.data.UnitDataset`)
run through the model; :func:`clip_probabilities` turns their logits into the clip's
probabilities with the scorer's own functions (:func:`serkit.scorer.clip_probabilities`) at
temperature 1 (the temperature is fitted after training). The metrics are those early stopping
and the best epoch may watch (``val_uar``, ``val_macro_f1``, ``val_accuracy``), defined as
:func:`serkit.evaluation.metrics` defines them for reports: a clip without speech has no answer,
which counts as wrong and is not a class of its own.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from serkit.scorer import clip_probabilities as scorer_probabilities
from serkit.scorer import mean_by


class UAR(MulticlassRecall):
    """Unweighted average recall: the mean recall over the classes the targets hold, as
    :func:`serkit.evaluation.metrics` (scikit-learn's balanced accuracy) counts it. torchmetrics'
    own macro average would also count a class no clip has but the model predicts, as recall 0."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes, average="none")

    def compute(self) -> torch.Tensor:
        tp, _, _, fn = self._final_state()
        held = (tp + fn) > 0
        return (tp[held] / (tp + fn)[held]).mean() if held.any() else torch.zeros((), device=tp.device)


class MacroF1(MulticlassF1Score):
    """Macro F1 over the classes the targets or the answers hold, the last class (no answer) left
    out: scikit-learn's ``f1_score(average="macro", labels=...)`` as :func:`serkit.evaluation.metrics`
    calls it."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes, average="none")

    def compute(self) -> torch.Tensor:
        tp, fp, _, fn = (t[:-1] for t in self._final_state())
        held = (tp + fp + fn) > 0
        return (2 * tp[held] / (2 * tp + fp + fn)[held]).mean() if held.any() else torch.zeros((), device=tp.device)


def validation_metrics(n_classes: int) -> MetricCollection:
    """The metrics early stopping and the best epoch may watch (:data:`serkit.config.MONITORS`),
    updated with each clip's answer: a class index, or ``n_classes`` for no answer (see
    :func:`answers`)."""
    return MetricCollection({"val_uar": UAR(n_classes + 1), "val_macro_f1": MacroF1(n_classes + 1),
                             "val_accuracy": MulticlassAccuracy(n_classes + 1, average="micro")})


def unit_batch(batch: Any) -> dict[str, Any]:
    """A validation batch as :func:`serkit.data.collate_units` makes it; a batch of one window per
    clip ``(wave, lengths, y[, mask])`` (cached features, or a plain dataset) becomes one of clips
    of one unit of one window each."""
    if isinstance(batch, dict):
        return batch
    wave, lengths, y, *mask = batch
    return {"windows": wave, "lengths": lengths, "owner": torch.arange(len(y)),
            "units": [[(0, int(k))] for k in lengths.tolist()], "y": y,
            "mask": mask[0] if mask else None}


def score_batch(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch: Any, n_classes: int,
                step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A validation batch scored: every window through ``forward`` (``step`` windows at a time),
    then :func:`clip_probabilities`. Returns the clips' probabilities, which clips have an answer,
    their labels and their class masks (or None)."""
    b = unit_batch(batch)
    windows, lengths = b["windows"], b["lengths"]
    logits = [forward(windows[i:i + step], lengths[i:i + step]) for i in range(0, len(windows), step)]
    probs, answered = clip_probabilities(torch.cat(logits) if logits else windows.new_zeros((0, n_classes)),
                                         b["owner"], b["units"])
    return probs, answered, b["y"], b["mask"]


def clip_probabilities(window_logits: torch.Tensor, owner: torch.Tensor,
                       units: list[list[tuple[int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip's probabilities (clips, classes), float32 on the logits' device, as
    :meth:`serkit.scorer.Scorer.analyse` computes them at temperature 1 from the logits of the
    clips' windows (``owner``: the batch-wide unit of each window, ``units``: each clip's units);
    and which clips have an answer (the rows of the others are zeros)."""
    x = window_logits.detach().float().cpu().numpy()
    unit_logits = mean_by(x, owner.cpu().numpy(), sum(map(len, units)))
    _, heads = scorer_probabilities(unit_logits, units, 1.0)
    answered = np.array([h is not None for h in heads], bool)
    probs = np.zeros((len(units), x.shape[1]), np.float32)
    if answered.any():
        probs[answered] = np.stack([h for h in heads if h is not None])
    device = window_logits.device
    return torch.from_numpy(probs).to(device), torch.from_numpy(answered).to(device)


def answers(probs: torch.Tensor, answered: torch.Tensor) -> torch.Tensor:
    """Each clip's answer for :func:`validation_metrics`: its top class, or the number of classes
    (no answer) for a clip without speech."""
    return torch.where(answered, probs.argmax(1), torch.full_like(answered, probs.shape[1], dtype=torch.long))


def first_visits(n: int, world: int, rank: int, seen: int, count: int) -> torch.Tensor:
    """Which of a rank's next ``count`` validation items (after ``seen``) are dataset items rather
    than padding, so that with several processes every clip counts once.

    Lightning gives each rank a ``DistributedSampler(shuffle=False)``: rank r takes items r,
    r + W, r + 2W, … of the dataset, padded by repeating its first items until every rank has as
    many; the padded positions are those at ``n`` or beyond.
    """
    return rank + (seen + torch.arange(count)) * world < n

"""Validation metrics during training, from torchmetrics: their states reduce across processes,
so a run on several devices scores its validation split as one process would.

They are the metrics early stopping and the best epoch may watch (``val_uar``, ``val_macro_f1``,
``val_accuracy``), defined as :func:`serkit.evaluation.metrics` defines them for reports.
"""
from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall


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


def validation_metrics(n_classes: int) -> MetricCollection:
    """The metrics early stopping and the best epoch may watch (:data:`MONITORS`), on the
    argmax of the logits, as :func:`serkit.evaluation.metrics` computes them."""
    return MetricCollection({"val_uar": UAR(n_classes),
                             "val_macro_f1": MulticlassF1Score(n_classes, average="macro"),
                             "val_accuracy": MulticlassAccuracy(n_classes, average="micro")})


def first_visits(n: int, world: int, rank: int, seen: int, count: int) -> torch.Tensor:
    """Which of a rank's next ``count`` validation items (after ``seen``) are dataset items rather
    than padding, so that with several processes every clip counts once.

    Lightning gives each rank a ``DistributedSampler(shuffle=False)``: rank r takes items r,
    r + W, r + 2W, … of the dataset, padded by repeating its first items until every rank has as
    many; the padded positions are those at ``n`` or beyond.
    """
    return rank + (seen + torch.arange(count)) * world < n

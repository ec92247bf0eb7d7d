"""Validation metrics during training come from torchmetrics (serkit.val_metrics): they equal the
reports' metrics (serkit.evaluation.metrics) over the whole validation split, and their states
reduce across processes with every clip counted once."""
from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, recall_score
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from serkit.evaluation import metrics
from serkit.training import SERModule, TrainConfig
from serkit.val_metrics import first_visits, validation_metrics

# 11 clips of classes 0 and 1 only; the model also predicts class 2, which no clip has
Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
PRED = np.array([0, 0, 2, 1, 0, 0, 1, 1, 2, 0, 1])


def logits_of(pred: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(pred), 3).float() * 3 - 1


class Logits(torch.nn.Module):
    """A model whose input is its output: the batch's "wave" is the logits."""

    def forward(self, wave, lengths):
        return wave


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_logged_validation_metrics_are_the_reports_metrics_over_the_whole_split():
    expected = metrics(Y, PRED)
    # the UAR of the classes the clips hold, not torchmetrics' macro recall (which also averages
    # in the predicted-but-absent class 2 as recall 0): the test tells the two apart
    assert expected["uar"] == pytest.approx(balanced_accuracy_score(Y, PRED))
    assert expected["uar"] != pytest.approx(recall_score(Y, PRED, average="macro", zero_division=0))
    # batches of 4: the mean of per-batch UARs is not the split's UAR
    per_batch = [metrics(Y[i:i + 4], PRED[i:i + 4])["uar"] for i in range(0, len(Y), 4)]
    assert np.mean(per_batch) != pytest.approx(expected["uar"])

    data = TensorDataset(logits_of(PRED), torch.full((len(Y),), 3), torch.from_numpy(Y))
    module = SERModule(Logits(), TrainConfig(), None, n_classes=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        logged = trainer.validate(module, DataLoader(data, batch_size=4), verbose=False)[0]
    assert logged["val_uar"] == pytest.approx(expected["uar"], abs=1e-6)
    assert logged["val_macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)
    assert logged["val_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (6, 3), (1, 2)])
def test_first_visits_marks_each_dataset_item_once(n, world):
    """What DistributedSampler hands each rank, less the padding first_visits marks, is the dataset."""
    data = list(range(n))
    per_rank = [list(DistributedSampler(data, num_replicas=world, rank=r, shuffle=False)) for r in range(world)]
    assert sum(map(len, per_rank)) > n or n % world == 0          # padding happens when n does not divide
    kept = []
    for r, items in enumerate(per_rank):
        seen = 0
        for batch in (items[i:i + 2] for i in range(0, len(items), 2)):   # batches of 2
            kept += [x for x, k in zip(batch, first_visits(n, world, r, seen, len(batch))) if k]
            seen += len(batch)
    assert sorted(kept) == data


def test_metric_states_of_two_processes_reduce_to_the_whole_split():
    """Each rank updates with its DistributedSampler share (padding dropped); the states merged as
    torchmetrics merges them across processes give the metrics of the whole split."""
    n, world = len(Y), 2
    logits, y = logits_of(PRED), torch.from_numpy(Y)
    ranks = []
    for r in range(world):
        idx = torch.tensor(list(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)))
        keep = first_visits(n, world, r, 0, len(idx))
        assert not keep.all() or r == 0                            # rank 1 repeats clip 0 as padding
        m = validation_metrics(3)
        m.update(logits[idx[keep]], y[idx[keep]])
        ranks.append(m)
    expected = metrics(Y, PRED)
    for name, key in (("val_uar", "uar"), ("val_macro_f1", "macro_f1"), ("val_accuracy", "accuracy")):
        merged = ranks[0][name]
        merged.merge_state(ranks[1][name])
        assert float(merged.compute()) == pytest.approx(expected[key], abs=1e-6), name

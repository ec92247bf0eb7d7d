"""Training on a pool of corpora that differ in size and in the emotions they have.

Three things keep one corpus from dominating or misteaching the others:

- **Class weights** are inverse class frequencies over the training part of the whole pool (as
  the clips are drawn: with corpus balancing, frequencies under the balanced draw), so rare
  classes (disgust, which only some corpora have) weigh as much as common ones.
- **Corpus balancing** (``TrainConfig.balance_corpora``, off by default) draws training clips
  with torch's :class:`~torch.utils.data.WeightedRandomSampler`, each corpus with the same total
  weight, so a small corpus is seen as often per epoch as a large one.
- **Corpus label masks** (``TrainConfig.corpus_label_mask``, off by default): the idea is that a
  corpus that never recorded disgust says nothing about disgust, so its clips should not teach
  "never disgust". In the loss, the logits of the classes a clip's corpus does not have at all
  (in the training part) are set to -inf; softmax and label smoothing run over the classes the
  corpus has. Predictions and metrics use every class: the mask only shapes training. Measured
  on the pool (``benchmarks/head_variants.py --only mask``), it does harm: nothing then holds
  the disgust logit down on those corpora's voices, so the model answers "disgust" for many of
  their clips; hence off by default.

:func:`plan_pool` computes all three from the split; :func:`pool_loader` serves a dataset with
each clip's mask appended to its item and the balanced draw; :func:`masked_cross_entropy` is the
loss. The training summary records which classes each corpus had.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler

from serkit.manifest import Utterance


@dataclass
class PoolPlan:
    """How the training part of a pool is drawn and weighted (see the module docstring)."""

    corpus_labels: dict[str, list[str]]      # classes each corpus has in the training part
    masks: np.ndarray | None                 # (clips, classes) bool: classes the loss may use
    sample_weights: np.ndarray | None        # per training clip (``sel["train"]`` order)
    class_weights: torch.Tensor | None       # per class, for the loss

    def summary(self) -> dict[str, Any]:
        return {"corpus_labels": self.corpus_labels,
                "masked": self.masks is not None,
                "balanced_corpora": self.sample_weights is not None}


def corpus_weights(corpora: list[str]) -> np.ndarray:
    """Per-clip weights under which every corpus in ``corpora`` has the same total (1 each)."""
    counts = Counter(corpora)
    return np.array([1.0 / counts[c] for c in corpora], dtype=np.float64)


def inverse_frequency(y: np.ndarray, n_classes: int, weights: np.ndarray | None = None) -> torch.Tensor:
    """Class weights ``total / (classes * count_k)`` over labels ``y`` (each clip counted with its
    ``weights`` when given), so every class carries the same share of the loss.

    Raises ValueError naming the classes with no training clip: such a class cannot be learnt.
    """
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    counts = np.bincount(y, weights=w, minlength=n_classes)
    empty = [k for k in range(n_classes) if counts[k] <= 0]
    if empty:
        raise ValueError(f"class index(es) {empty} have no clip in the training part")
    return torch.tensor(counts.sum() / (n_classes * counts), dtype=torch.float32)


def plan_pool(utts: list[Utterance], y: list[int], sel: dict[str, list[int]], labels: list[str],
              class_weights: bool = True, balance_corpora: bool = False,
              corpus_label_mask: bool = False) -> PoolPlan:
    """Class weights, corpus balancing and label masks for a split (``sel``: part -> indices).

    Raises ValueError naming the emotions that no training clip has (move them out with
    ``--emotions``, or choose a split that keeps them in training).
    """
    train = sel["train"]
    absent = [labels[k] for k in sorted(set(range(len(labels))) - {y[i] for i in train})]
    if absent:
        raise ValueError(f"emotion(s) {', '.join(absent)} have no clip in the training part of this "
                         "split; leave them out with --emotions or keep their corpus in training")
    has: dict[str, set[int]] = {}
    for i in train:
        has.setdefault(utts[i].corpus, set()).add(y[i])
    corpus_labels = {c: [labels[k] for k in sorted(ks)] for c, ks in sorted(has.items())}
    sample_weights = corpus_weights([utts[i].corpus for i in train]) if balance_corpora else None
    weights = (inverse_frequency(np.array([y[i] for i in train]), len(labels), sample_weights)
               if class_weights else None)
    masks = None
    if corpus_label_mask and any(len(ks) < len(labels) for ks in has.values()):
        every = set(range(len(labels)))
        masks = np.zeros((len(utts), len(labels)), dtype=bool)
        for i, u in enumerate(utts):
            # a corpus not in training (a held-out corpus) keeps every class; a clip always keeps its own
            masks[i, sorted(has.get(u.corpus, every) | {y[i]})] = True
    return PoolPlan(corpus_labels, masks, sample_weights, weights)


class WithMask(Dataset):
    """A dataset's items with the clip's class mask appended: (…, mask)."""

    def __init__(self, dataset: Dataset, masks: np.ndarray):
        self.dataset, self.masks = dataset, torch.from_numpy(masks)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        return (*self.dataset[i], self.masks[i])


def pool_loader(dataset: Dataset, idx: list[int], train: bool, plan: PoolPlan, batch_size: int,
                seed: int = 0, num_workers: int = 0, collate_fn: Callable | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` (the clips ``idx`` of the manifest, in order): masks appended
    when the plan has them; training draws balanced over corpora when the plan says so,
    otherwise shuffles; batches made by ``collate_fn`` (default: torch's)."""
    n = len(dataset)  # type: ignore[arg-type]
    if plan.masks is not None:
        dataset = WithMask(dataset, plan.masks[idx])
    sampler = None
    if train and plan.sample_weights is not None:
        sampler = WeightedRandomSampler(plan.sample_weights.tolist(), num_samples=n, replacement=True,
                                        generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=num_workers, drop_last=train and n > batch_size,
                      persistent_workers=num_workers > 0, collate_fn=collate_fn)


def judged_loader(loader: DataLoader, keep: list[bool]) -> DataLoader:
    """A validation ``loader`` (its dataset in the order of the clips it was made for) over the
    clips ``keep`` marks only: the clips :func:`serkit.corpora.judged` keeps, so that the best
    epoch and early stopping watch the same clips every reported figure judges. Unchanged when
    every clip is kept."""
    if all(keep):
        return loader
    rows = [k for k, j in enumerate(keep) if j]
    return DataLoader(Subset(loader.dataset, rows), batch_size=loader.batch_size, shuffle=False,
                      num_workers=loader.num_workers, persistent_workers=loader.num_workers > 0,
                      collate_fn=loader.collate_fn)


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                         weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the classes ``mask`` allows per clip (the others' logits are -inf).

    Label smoothing spreads over the allowed classes only. Without a mask (or with every class
    allowed) this is exactly ``F.cross_entropy(logits, y, weight, label_smoothing=…)``.
    """
    if mask is None:
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)
    mask = mask.to(torch.bool)
    logp = F.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=1).masked_fill(~mask, 0.0)
    w = weight if weight is not None else torch.ones(logits.shape[1], device=logits.device)
    w_y = w[y]
    nll = -logp.gather(1, y[:, None])[:, 0]
    smooth = -(logp * w).sum(1) / mask.sum(1)
    return ((1 - label_smoothing) * w_y * nll + label_smoothing * smooth).sum() / w_y.sum()

"""Probe: does the fast model (CNN-LSTM) gain from learning the default's features or answers?

    python benchmarks/fast_distil.py --fold 2 --weight 1.0 --out runs/fast-distil
    python benchmarks/fast_distil.py --teacher answers --fold K --epochs 24 --patience 8 --out runs/fast-kd

Trains the CNN-LSTM exactly as ``benchmarks/accuracy.py --model cnn_lstm --epochs 12
--only-fold K --train-options '{"patience": 5, "corpus_label_mask": false}'`` does (the shipped
fast model's recipe, RESULTS-default.md), with one change to the training loss: a linear
projection of the model's pooled representation (what its last Linear layer reads) regresses
the clip's frozen Whisper-base features (the default's: the mean of layers 1-4 over the speech
span, standardised on the fold's training clips), and

    loss = cross-entropy + weight * mean squared error.

The projection only trains with the model and is not part of the bundle; validation, the chosen
epoch and the test figures are the CNN-LSTM's own, scored by the one scorer as accuracy.py
scores them. The teacher's features are the encoder statistics cache's
(``benchmarks/head_probe.py``'s ``pool_features``), computed once.

With ``--teacher answers`` the CNN-LSTM learns the default head's answers instead (knowledge
distillation, Hinton et al. 2015): the shipped head's logistic regression (C 0.003, balanced
classes) on the same standardised features, fitted on the fold's training clips only (never its
validation or test speakers), gives each training clip its probabilities at temperature T, and

    loss = (1 - weight) * cross-entropy + weight * T^2 * KL(teacher || model at T).

With ``--teacher views`` the same head answers on each training view as the CNN-LSTM sees it
(span widened, speed, room, crop: the batch's waveforms), through the shipped int8 encoder while
the model trains (a consistent teacher, Beyer et al. 2022), instead of once on the clean clips.

This is a probe, not a training option: it patches serkit.training's step for this process
only. Its results (features, five folds, W 1: 0.547 against 0.552 without it; answers, two
folds: lower on both; answers on the views, fold 0: lower) are in RESULTS-default.md ("The fast model").
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_probe import pool_features  # noqa: E402

import accuracy  # noqa: E402
import serkit.training as training  # noqa: E402
from serkit.splits import speaker_folds  # noqa: E402


class Pooled(torch.nn.Linear):
    """The model's last Linear layer, keeping what it was given (the pooled representation)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.pooled = z
        return super().forward(z)


def patch(teacher: dict[str, np.ndarray], weight: float, answers: bool = False, temperature: float = 2.0,
          views: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
    """Make serkit.training's CNN-LSTM runs learn ``teacher`` (path -> features, or with
    ``answers`` the teacher's probabilities at ``temperature``) beside the labels; with ``views``
    (batch waves and valid lengths -> probabilities at ``temperature``) the teacher answers on
    each training view as the model sees it instead."""
    by_wave: dict[int, np.ndarray] = {}
    decode = training.decode_all

    def decode_all(utts, *a, **k):                 # remember which waveform is which clip
        waves = decode(utts, *a, **k)
        for u, w in zip(utts, waves):
            by_wave[id(w)] = teacher[str(Path(u.path).resolve())]
        return waves

    class WithTeacher(training.ClipDataset):      # training items carry the clip's features
        def __getitem__(self, i):
            return (*super().__getitem__(i), torch.from_numpy(by_wave[id(self.waves[i])]))

    init, configure = training.SERModule.__init__, training.SERModule.configure_optimizers

    def module_init(self, model, *a, **k):
        head = model.head
        model.head = Pooled(head.in_features, head.out_features)
        model.head.load_state_dict(head.state_dict())
        init(self, model, *a, **k)
        dim = len(next(iter(teacher.values())))
        self.projection = torch.nn.Linear(head.in_features, dim)

    def configure_optimizers(self):                # the projection trains with the model
        params = self.model.parameters
        self.model.parameters = lambda: iter([*params(), *self.projection.parameters()])
        try:
            return configure(self)
        finally:
            del self.model.parameters

    def distil_step(self, batch, batch_idx):
        wave, lengths, y, soft = batch
        if views is not None:     # the teacher hears this view: rooms, speed, crop and all
            soft = torch.from_numpy(views(wave.numpy(), lengths.numpy())).to(wave.dtype)
        logits = self(wave, lengths)
        kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean") * temperature ** 2
        loss = (1 - weight) * self._loss(logits, y, None) + weight * kd
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train_distillation", kd, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        wave, lengths, y, features = batch
        logits = self(wave, lengths)
        regress = F.mse_loss(self.projection(self.model.head.pooled), features)
        loss = self._loss(logits, y, None) + weight * regress
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train_regression", regress, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    training.decode_all, training.ClipDataset = decode_all, WithTeacher
    if answers:
        training.SERModule.training_step = distil_step
        return
    training.SERModule.__init__ = module_init
    training.SERModule.configure_optimizers = configure_optimizers
    training.SERModule.training_step = training_step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", default="../shared/corpora")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--fold", type=int, default=2)
    ap.add_argument("--teacher", choices=("features", "answers", "views"), default="features",
                    help="regress the default's features, learn its head's answers on the clips (distillation), "
                         "or its answers on each augmented training view (computed as the model trains)")
    ap.add_argument("--weight", type=float, default=None,
                    help="weight of the feature regression (default 1) or of the distillation (default 0.5) in the loss")
    ap.add_argument("--temperature", type=float, default=2.0, help="distillation temperature (--teacher answers)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--out", default="runs/fast-distil")
    args = ap.parse_args(argv)
    answers = args.teacher in ("answers", "views")
    weight = args.weight if args.weight is not None else (0.5 if answers else 1.0)
    pool = pool_features(args.manifest)
    x = pool.x[:, 1:5, : pool.x.shape[-1] // 2].reshape(len(pool.utts), -1)     # the default's features
    train = np.array(list(speaker_folds(pool.utts, 5, seed=0))[args.fold]) == "train"
    x = ((x - x[train].mean(0)) / (x[train].std(0) + 1e-6)).astype(np.float32)
    views = None
    if answers:   # the head as shipped fits it, on the fold's training clips alone
        head = LogisticRegression(C=0.003, max_iter=500, class_weight="balanced").fit(x[train], pool.y[train])
        if args.teacher == "views":
            raw = pool.x[:, 1:5, : pool.x.shape[-1] // 2].reshape(len(pool.utts), -1)[train]
            mu, sd = raw.mean(0), raw.std(0) + 1e-6
            runtime = pool.encoder.runtime

            def views(wave: np.ndarray, lengths: np.ndarray) -> np.ndarray:
                mean, _ = runtime.stats(np.ascontiguousarray(wave, np.float32), lengths.astype(np.int64))
                f = (mean[:, 1:5].reshape(len(wave), -1) - mu) / sd
                return torch.softmax(torch.tensor(head.decision_function(f) / args.temperature), dim=1).numpy()
        scaled = torch.tensor(head.decision_function(x) / args.temperature, dtype=torch.float32)
        x = torch.softmax(scaled, dim=1).numpy()
        print(f"teacher: right on {np.mean(x[train].argmax(1) == pool.y[train]):.1%} of its training clips", flush=True)
    patch({str(Path(u.path).resolve()): f for u, f in zip(pool.utts, x)}, weight, answers, args.temperature, views)
    options = {"patience": args.patience, "corpus_label_mask": False}
    return accuracy.main(["--corpora", args.corpora, "--model", "cnn_lstm", "--epochs", str(args.epochs),
                          "--only-fold", str(args.fold), "--train-options", json.dumps(options), "--out", args.out])


if __name__ == "__main__":
    raise SystemExit(main())

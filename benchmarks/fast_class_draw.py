"""Probe: does the fast model (CNN-LSTM) gain from drawing each corpus's classes equally?

    python benchmarks/fast_class_draw.py --fold 2 --out runs/fast-class-draw

The shipped recipe weighs the loss by inverse class frequency over the whole pool. Disgust, which
only RAVDESS and EmoDB have, then weighs about 7x the other classes, all of it on those two
corpora's voices, and the shipped fast model answers "disgust" for many RAVDESS clips (65 of 176
on the shipped split, 32 of them disgust). Here the loss is unweighted and training clips are
drawn (torch's WeightedRandomSampler, as ``--balance-corpora`` draws) with weight
n_c / (k_c * n_ck) for a clip of class k in corpus c (k_c classes, n_c clips, n_ck of class k):
corpora keep their sizes, and within each corpus every class is drawn equally often.

Everything else is ``benchmarks/accuracy.py --model cnn_lstm --epochs 24 --only-fold K
--train-options '{"patience": 8, "corpus_label_mask": false, "seed": 0}'`` (the shipped members'
first run). A probe, not a training option: it patches serkit.training's pool plan for this
process only. Its result is in RESULTS-default.md ("The fast model").
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy  # noqa: E402
import serkit.training as training  # noqa: E402
from serkit.pool import plan_pool  # noqa: E402


def within_corpus_draw(utts, y, sel, labels, class_weights=True, balance_corpora=False, corpus_label_mask=False):
    """:func:`serkit.pool.plan_pool`'s plan with no class weights and the draw described above."""
    plan = plan_pool(utts, y, sel, labels, False, False, corpus_label_mask)
    corpus = [utts[i].corpus for i in sel["train"]]
    label = [y[i] for i in sel["train"]]
    cells, size = Counter(zip(corpus, label)), Counter(corpus)
    classes = Counter(c for c, _ in cells)
    plan.sample_weights = np.array([size[c] / (classes[c] * cells[c, k]) for c, k in zip(corpus, label)])
    return plan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", default="../shared/corpora")
    ap.add_argument("--fold", type=int, default=2)
    ap.add_argument("--out", default="runs/fast-class-draw")
    args = ap.parse_args(argv)
    training.plan_pool = within_corpus_draw
    options = {"patience": 8, "corpus_label_mask": False, "seed": 0}
    return accuracy.main(["--corpora", args.corpora, "--model", "cnn_lstm", "--epochs", "24",
                          "--only-fold", str(args.fold), "--train-options", json.dumps(options), "--out", args.out])


if __name__ == "__main__":
    raise SystemExit(main())

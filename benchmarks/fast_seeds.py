"""Probe: how much of the fast model's figure is its seed, and what averaging seeds would give.

    python benchmarks/fast_seeds.py --seeds 0 1 2 --out runs/fast-seeds
    python benchmarks/fast_seeds.py --runs runs/bench-fast-seed0/fold2 runs/bench-fast-seed1/fold2 ...

Trains the shipped fast recipe (``make fast-model``: the CNN-LSTM, 24 epochs, patience 8, no corpus
label mask, rooms, refitted with the validation speakers) once per seed on the **same** split, the
shipped one (split seed 0), so only the initialisation, the order of the clips and the augmentation
draws differ: these are the members of the shipped fast model (``make fast-model`` trains the same
three runs and joins them with ``serkit ensemble``; the recipe is deterministic). Then scores every
run, and the mean of their clip-level probabilities (the probe that led to the shipped ensemble,
which averages per window inside one graph instead), on the split's test speakers through the
Predictor users call, judged as ``benchmarks/accuracy.py`` judges (ASED on sentences 01-02; a clip
without speech is wrong).

A run folder that already holds a bundle is scored as it is (``--force`` trains it again). About
16 minutes a seed here (the refit included). ``--runs`` scores run folders trained elsewhere on one
split instead, e.g. one fold of ``benchmarks/accuracy.py`` trained with several seeds
(``--train-options '{"seed": 1, ...}'``, the folds staying those of ``--seed``). Its results are in
RESULTS-default.md ("Seeds"; measured before the recipe had the refit).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import breakdown, fair  # noqa: E402

from serkit.bundle import read_config  # noqa: E402
from serkit.config import TrainConfig  # noqa: E402
from serkit.inference import load_model  # noqa: E402
from serkit.manifest import read_manifest  # noqa: E402
from serkit.training import train  # noqa: E402


def train_seed(manifest: str, out: Path, seed: int) -> None:
    """The shipped fast recipe with ``seed``, on the split of seed 0 (``--split-seed 0``: one
    member of ``make fast-model``'s ensemble)."""
    cfg = TrainConfig(model="cnn_lstm", epochs=24, patience=8, seed=seed, split_seed=0, corpus_label_mask=False,
                      rooms=True, refit_epochs=True, progress=False)
    train(manifest, out, cfg, force=True)


def probabilities(bundle: Path, files: list[str], labels: list[str]) -> np.ndarray:
    """(clips, classes) calibrated probabilities in ``labels``' order; NaN rows: no speech found."""
    model = load_model(bundle)
    rows = []
    for r in model.predict_files(files):
        if r.error:        # a clip that cannot be read would count as a wrong answer: stop instead
            raise SystemExit(f"{bundle}: {r.error}")
        rows.append([r.probabilities[label] for label in labels] if r.probabilities else [np.nan] * len(labels))
    return np.array(rows, dtype=np.float64)


def line(name: str, utts, y: np.ndarray, probs: np.ndarray) -> str:
    pred = np.where(np.isnan(probs).any(axis=1), -1, np.nan_to_num(probs).argmax(axis=1))
    b = breakdown(utts, y, pred)
    corpora = "  ".join(f"{c} {m['uar']:.3f}" for c, m in b.items() if c != "pool")
    return f"{name:<24} UAR {b['pool']['uar']:.3f}  accuracy {b['pool']['accuracy']:.3f}  ({corpora})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/fast-seeds")
    ap.add_argument("--force", action="store_true", help="train runs that already have a bundle again")
    ap.add_argument("--runs", nargs="+", default=None, metavar="RUN",
                    help="score these run folders (one split, any seeds) instead of training")
    args = ap.parse_args(argv)

    if args.runs:
        runs = {json.loads((Path(r) / "config.json").read_text())["seed"]: Path(r) for r in args.runs}
        splits = {(run / "split.csv").read_bytes() for run in runs.values()}
        if len(runs) != len(args.runs) or len(splits) != 1:
            raise SystemExit("--runs: give runs of one split with different seeds")
    else:
        runs = {s: Path(args.out) / f"seed{s}" for s in args.seeds}
        for seed, run in runs.items():
            if args.force or not (run / "bundle").is_dir():
                train_seed(args.manifest, run, seed)
    first = next(iter(runs.values()))
    test = [u for u in read_manifest(first / "split.csv") if u.split == "test"]
    labels = read_config(first / "bundle")["labels"]
    y = np.array([labels.index(u.emotion) for u in test])
    files = [str(u.path) for u in test]
    print(f"{len(test)} test clips of {first / 'split.csv'} ({sum(map(fair, test))} judged)")
    probs = {}
    for seed, run in runs.items():
        probs[seed] = probabilities(run / "bundle", files, labels)
        print(line(f"seed {seed}", test, y, probs[seed]))
    for k in range(2, len(runs) + 1):
        members = list(runs)[:k]
        print(line(f"mean of seeds {', '.join(map(str, members))}", test, y, np.mean([probs[s] for s in members], axis=0)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

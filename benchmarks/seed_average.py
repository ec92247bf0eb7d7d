"""What averaging the answers of runs that differ only in their training seed gains on the
corpora each run left out (``benchmarks/accuracy.py --loco`` runs with ``"seed": S`` in
``--train-options``).

    python benchmarks/seed_average.py runs/bench-default-s24 runs/bench-default-loco-seed1 \
        runs/bench-default-loco-seed2

For every ``loco-CORPUS`` folder all the runs have, each run's bundle scores that corpus's judged
clips (the first run's ``eval/predictions.csv`` names them: ASED on its sentences 01-02) through
the one scorer, each clip decoded once; the runs' probabilities are then averaged clip by clip. A
clip without an answer counts as wrong, as ``serkit evaluate`` counts it. Prints UAR per run,
their mean, and the averaged answers' UAR.
"""
from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np

from serkit.audio import decode_item
from serkit.evaluation import metrics
from serkit.inference import load_model


def corpus_probabilities(runs: list[Path], corpus: str, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (runs, clips, classes), NaN where a run gave no answer; true class indices)."""
    rows = [r for r in csv.DictReader(open(runs[0] / f"loco-{corpus}" / "eval" / "predictions.csv"))
            if r["Judged"] == "yes"]
    models = [load_model(run / f"loco-{corpus}" / "bundle") for run in runs]
    labels = models[0].labels
    if any(m.labels != labels for m in models):
        raise SystemExit(f"loco-{corpus}: the runs' models have different labels")
    probs: list[list[np.ndarray]] = [[] for _ in models]
    for start in range(0, len(rows), batch):
        items = [decode_item(r["File"], models[0].sample_rate) for r in rows[start:start + batch]]
        bad = [e for _, w, e in items if w is None]
        if bad:
            raise SystemExit(bad[0])
        waves = [w for _, w, _ in items]
        for k, model in enumerate(models):
            probs[k] += [np.full(len(labels), np.nan) if a.probabilities is None else a.probabilities
                         for a in model.analyse(waves)]
    return np.array(probs), np.array([labels.index(r["Emotion"]) for r in rows])


def answers(p: np.ndarray) -> np.ndarray:
    """Each clip's class, -1 (wrong whatever the truth) where there is no answer."""
    answered = ~np.isnan(p).any(-1)
    return np.where(answered, np.nan_to_num(p, nan=-1.0).argmax(-1), -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="accuracy.py --out folders with loco-CORPUS runs")
    args = ap.parse_args()
    corpora = sorted(set.intersection(*({p.name[5:] for p in run.glob("loco-*")} for run in args.runs)))
    if not corpora:
        raise SystemExit("the runs share no loco-CORPUS folder")
    gains = []
    for corpus in corpora:
        probs, y = corpus_probabilities(args.runs, corpus)
        each = [metrics(y, answers(p))["uar"] for p in probs]
        with warnings.catch_warnings():          # a clip no run answered stays NaN: no answer
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(probs, axis=0)     # over the runs that answered each clip
        together = metrics(y, answers(mean))["uar"]
        gains.append((np.mean(each), together))
        print(f"{corpus:8s} runs {' '.join(f'{u:.3f}' for u in each)}  mean {np.mean(each):.3f}  "
              f"averaged answers {together:.3f}  ({len(y)} clips)", flush=True)
    print(f"mean over the corpora: one run {np.mean([g[0] for g in gains]):.3f}, "
          f"averaged answers {np.mean([g[1] for g in gains]):.3f}")


if __name__ == "__main__":
    main()

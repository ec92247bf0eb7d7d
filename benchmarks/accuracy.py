"""Speaker-independent accuracy of serkit models: 5-fold speaker-grouped cross-validation.

    python benchmarks/accuracy.py --corpora ../shared/corpora [--folds 5] [--epochs 60]
        [--random-split] [--baseline] [--out runs/bench-accuracy]

For each fold, one fifth of the speakers is the test set, a speaker-grouped validation set is
drawn from the rest (early stopping and the best epoch), and the model trains on the remainder.
Prints accuracy, macro-F1 and UAR per fold, mean ± sd over folds, and per corpus. With
``--random-split`` the same model is also trained on the original project's random utterance
split (speakers leak into test) for contrast; with ``--baseline``, MFCC statistics + logistic
regression are scored on the same folds (needs librosa, a dev dependency).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from serkit.corpora import scan
from serkit.emotions import DEFAULT_EMOTIONS
from serkit.manifest import Utterance, with_split
from serkit.splits import speaker_folds, split
from serkit.training import TrainConfig, train

KEYS = ("accuracy", "macro_f1", "uar")


def mfcc_baseline(utts: list[Utterance], parts: list[str]) -> dict[str, float]:
    """40 MFCC + deltas, mean and std per clip, standardised, logistic regression (train part only)."""
    import librosa
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from serkit.data import decode_all
    from serkit.evaluation import metrics

    waves = decode_all(utts, progress=False)
    feats = []
    for w in waves:
        m = librosa.feature.mfcc(y=w, sr=16000, n_mfcc=40)
        d = librosa.feature.delta(m)
        feats.append(np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]))
    x = np.stack(feats)
    labels = sorted({u.emotion for u in utts})
    y = np.array([labels.index(u.emotion) for u in utts])
    tr = np.array([p in ("train", "val") for p in parts])
    te = np.array([p == "test" for p in parts])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1)).fit(x[tr], y[tr])
    return metrics(y[te], clf.predict(x[te]))


def run_task(task: tuple[str, list[str]], utts: list[Utterance], cfg: dict, out: Path, baseline: bool,
             threads: int) -> tuple[str, dict, dict | None, float, dict | None]:
    """Train and test one fold (or the random split): (name, report, baseline, seconds, cache info)."""
    import torch

    torch.set_num_threads(threads)
    name, parts = task
    t0 = time.time()
    r = train(with_split(utts, parts), out / name, TrainConfig(**cfg))
    bundle = json.loads((out / name / "bundle" / "config.json").read_text())
    b = mfcc_baseline(utts, parts) if baseline and name != "random-split" else None
    return name, r, b, time.time() - t0, bundle["training"].get("embedding_cache")


def summarise(name: str, reports: list[dict]) -> dict:
    out = {k: (float(np.mean([r[k] for r in reports])), float(np.std([r[k] for r in reports]))) for k in KEYS}
    print(f"{name:<28}" + "  ".join(f"{k} {m:.3f} ± {s:.3f}" for k, (m, s) in out.items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", default="../shared/corpora")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--model", default="cnn_lstm")
    ap.add_argument("--model-options", default="{}", help="JSON of architecture settings, e.g. "
                    '\'{"backbone": "../shared/models/whisper-base", "freeze": "head"}\' with --model pretrained')
    ap.add_argument("--train-options", default="{}",
                    help='JSON of other TrainConfig fields, e.g. \'{"lr": 1e-3, "patience": 20}\'')
    ap.add_argument("--random-split", action="store_true", help="also train on the leaky random split")
    ap.add_argument("--baseline", action="store_true", help="also score MFCC + logistic regression")
    ap.add_argument("--only-fold", type=int, help="run this fold alone (0-based)")
    ap.add_argument("--jobs", type=int, default=1, help="folds trained in parallel processes (cores are shared out)")
    ap.add_argument("--out", default="runs/bench-accuracy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if not Path(args.corpora).exists():
        print(f"corpora not found: {args.corpora}", file=sys.stderr)
        return 2
    utts = scan(args.corpora, emotions=DEFAULT_EMOTIONS)
    print(f"{len(utts)} clips, {len({u.group for u in utts})} speakers, six emotions; "
          f"{args.folds}-fold speaker-grouped CV, seed {args.seed}", flush=True)
    options = json.loads(args.model_options)
    cfg = dict(model=args.model, epochs=args.epochs, seed=args.seed, progress=False, model_options=options,
               **json.loads(args.train_options))
    tasks = [(f"fold{k}", parts) for k, parts in enumerate(speaker_folds(utts, args.folds, seed=args.seed))
             if args.only_fold is None or k == args.only_fold]
    if args.random_split:
        tasks.append(("random-split", split(utts, "random", seed=args.seed)))
    jobs = max(1, min(args.jobs, len(tasks)))
    run = partial(run_task, utts=utts, cfg=cfg, out=Path(args.out), baseline=args.baseline,
                  threads=max(1, (os.cpu_count() or 1) // jobs))
    if jobs == 1:
        done = [run(t) for t in tasks]
    else:  # folds train in parallel processes, each with its share of the cores
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(run, tasks))
    results: dict[str, list[dict]] = {"model": [], "baseline": []}
    per_corpus: dict[str, list[dict]] = {}
    summary: dict = {}
    for name, r, b, seconds, cache in done:
        line = f"{name}: " + "  ".join(f"{x} {r[x]:.3f}" for x in KEYS) + f"  ({r['n']} test clips, {seconds:.0f} s)"
        if cache:  # frozen pretrained encoder: the head trained on cached embeddings
            line += f"  [embeddings: {cache['misses']} computed, {cache['hits']} cached]"
        if b:
            line += "   MFCC+LR: " + "  ".join(f"{x} {b[x]:.3f}" for x in KEYS)
        print(line, flush=True)
        if name == "random-split":
            summary["random_split"] = {x: r[x] for x in KEYS}
            continue
        results["model"].append(r)
        if b:
            results["baseline"].append(b)
        for c, m in r["per_corpus"].items():
            per_corpus.setdefault(c, []).append(m)
    if results["model"]:
        print(f"\nspeaker-independent (mean ± sd over {len(results['model'])} folds)")
        summary["model"] = summarise(args.model, results["model"])
        for c, ms in sorted(per_corpus.items()):
            summary[c] = summarise(f"  {c}", ms)
        if results["baseline"]:
            summary["mfcc_lr"] = summarise("MFCC + logistic regression", results["baseline"])
    if "random_split" in summary:
        print("random utterance split (LEAKY: test speakers also in training): "
              + "  ".join(f"{x} {summary['random_split'][x]:.3f}" for x in KEYS))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speaker-independent accuracy of serkit models: 5-fold speaker-grouped cross-validation and
leave-one-corpus-out, per corpus.

    python benchmarks/accuracy.py --corpora ../shared/corpora [--model encoder_head|cnn_lstm]
        [--folds 5] [--loco] [--epochs 60] [--random-split] [--baseline] [--out runs/bench-accuracy]

Every test figure is computed from the run's own test predictions (``eval/predictions.csv``,
written through the one scorer, as ``serkit predict`` would answer), per corpus; ASED is judged
on its sentences 01 and 02 only (the two texts every speaker said in every emotion: its other
sentences are emotion-specific texts whose words give the label away), and a pool figure is
also given with ASED so restricted. With ``--loco`` each corpus is also held out whole
(``--split corpus``), trained on the other three.

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

from serkit.corpora import scan, words_give_label
from serkit.emotions import DEFAULT_EMOTIONS
from serkit.manifest import Utterance, with_split
from serkit.splits import speaker_folds, split
from serkit.training import TrainConfig, train

KEYS = ("accuracy", "macro_f1", "uar")


def fair(u: Utterance) -> bool:
    """Whether a clip counts in the judged figures: serkit's own rule, as every report judges
    (:func:`serkit.corpora.words_give_label`: every clip except ASED's emotion-specific texts)."""
    return not words_give_label(u)


def breakdown(utts: list[Utterance], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict]:
    """Metrics over the judged clips ("pool") and per corpus (ASED on sentences 01-02)."""
    from serkit.evaluation import metrics

    keep = np.array([fair(u) for u in utts])
    out = {"pool": metrics(y_true[keep], y_pred[keep])}
    for c in sorted({u.corpus for u in utts}):
        sel = keep & np.array([u.corpus == c for u in utts])
        if sel.any():
            out[c] = metrics(y_true[sel], y_pred[sel])
    return out


def run_predictions(utts: list[Utterance], run: Path, labels: list[str]) -> tuple[list[Utterance], np.ndarray, np.ndarray]:
    """The test clips of a run and their true and predicted class indices (-1: no speech found)."""
    import csv

    by_path = {str(u.path): u for u in utts}
    rows = list(csv.DictReader(open(run / "eval" / "predictions.csv", encoding="utf-8")))
    test = [by_path[r["File"]] for r in rows]
    y = np.array([labels.index(u.emotion) for u in test])
    pred = np.array([labels.index(r["Predicted"]) if r["Predicted"] in labels else -1 for r in rows])
    return test, y, pred


def mfcc_baseline(utts: list[Utterance], parts: list[str]) -> dict[str, float]:
    """40 MFCC + deltas, mean and std per clip, standardised, logistic regression (train part only)."""
    import librosa
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from serkit.data import decode_all

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
    return breakdown([u for u, t in zip(utts, te) if t], y[te], clf.predict(x[te]))


def run_task(task: tuple[str, list[str]], utts: list[Utterance], cfg: dict, out: Path, baseline: bool,
             threads: int, force: bool = False) -> tuple[str, dict, dict | None, float, dict | None]:
    """Train and test one fold (or the random split): (name, report, baseline, seconds, cache info)."""
    import torch

    torch.set_num_threads(threads)
    name, parts = task
    t0 = time.time()
    train(with_split(utts, parts), out / name, TrainConfig(**cfg), force=force)
    bundle = json.loads((out / name / "bundle" / "config.json").read_text())
    r = breakdown(*run_predictions(utts, out / name, bundle["labels"]))
    b = mfcc_baseline(utts, parts) if baseline and name != "random-split" else None
    counts = out / name / "cache.json"   # a frozen encoder's run: windows computed and cached
    counts = json.loads(counts.read_text()) if counts.is_file() else {}
    return name, r, b, time.time() - t0, counts.get("embedding_cache") or counts.get("encoder_cache")


def summarise(name: str, reports: list[dict]) -> dict:
    out = {k: (float(np.mean([r[k] for r in reports])), float(np.std([r[k] for r in reports]))) for k in KEYS}
    print(f"{name:<28}" + "  ".join(f"{k} {m:.3f} ± {s:.3f}" for k, (m, s) in out.items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", default="../shared/corpora")
    ap.add_argument("--folds", type=int, default=5, help="speaker-grouped folds (0: none, e.g. with --loco)")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--model", default="cnn_lstm")
    ap.add_argument("--model-options", default="{}", help="JSON of architecture settings, e.g. "
                    '\'{"backbone": "../shared/models/whisper-base", "freeze": "head"}\' with --model pretrained')
    ap.add_argument("--train-options", default="{}",
                    help='JSON of other TrainConfig fields, e.g. \'{"lr": 1e-3, "patience": 20}\'')
    ap.add_argument("--random-split", action="store_true", help="also train on the leaky random split")
    ap.add_argument("--baseline", action="store_true", help="also score MFCC + logistic regression")
    ap.add_argument("--only-fold", type=int, help="run this fold alone (0-based)")
    ap.add_argument("--loco", action="store_true", help="also leave each corpus out whole")
    ap.add_argument("--force", action="store_true",
                    help="train again into run folders of an earlier benchmark in --out (serkit's files only)")
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
    # --train-options may name any TrainConfig field, the seed too: a training seed other than the
    # folds' (--seed) trains the same folds again with another initialisation and augmentation
    cfg = {**dict(model=args.model, epochs=args.epochs, seed=args.seed, progress=False, model_options=options),
           **json.loads(args.train_options)}
    tasks = [] if not args.folds else [
        (f"fold{k}", parts) for k, parts in enumerate(speaker_folds(utts, args.folds, seed=args.seed))
        if args.only_fold is None or k == args.only_fold]
    if args.loco:
        tasks += [(f"loco-{c}", split(utts, "corpus", test_corpus=c, seed=args.seed))
                  for c in sorted({u.corpus for u in utts})]
    if args.random_split:
        tasks.append(("random-split", split(utts, "random", seed=args.seed)))
    jobs = max(1, min(args.jobs, len(tasks)))
    run = partial(run_task, utts=utts, cfg=cfg, out=Path(args.out), baseline=args.baseline, force=args.force,
                  threads=max(1, (os.cpu_count() or 1) // jobs))
    if jobs == 1:
        done = [run(t) for t in tasks]
    else:  # folds train in parallel processes, each with its share of the cores
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(run, tasks))
    folds: dict[str, list[dict]] = {}
    base: dict[str, list[dict]] = {}
    summary: dict = {"loco": {}, "loco_mfcc_lr": {}}
    for name, r, b, seconds, cache in done:
        line = f"{name}: " + "  ".join(f"{x} {r['pool'][x]:.3f}" for x in KEYS) + \
            f"  ({r['pool']['n']} judged test clips, {seconds:.0f} s)"
        if cache:  # frozen encoder: the head trained on cached statistics
            line += f"  [encoder windows: {cache.get('misses', cache.get('windows_computed'))} computed, " \
                    f"{cache.get('hits', cache.get('windows_cached'))} cached]"
        if b:
            line += "   MFCC+LR: " + "  ".join(f"{x} {b['pool'][x]:.3f}" for x in KEYS)
        print(line, flush=True)
        print("    per corpus: " + ", ".join(f"{c} UAR {m['uar']:.3f} (n {m['n']})" for c, m in r.items()
                                          if c != "pool"), flush=True)
        if name == "random-split":
            summary["random_split"] = {x: r["pool"][x] for x in KEYS}
        elif name.startswith("loco-"):
            corpus = name[5:]
            summary["loco"][corpus] = r[corpus]
            if b:
                summary["loco_mfcc_lr"][corpus] = b[corpus]
        else:
            for c, m in r.items():
                folds.setdefault(c, []).append(m)
            for c, m in (b or {}).items():
                base.setdefault(c, []).append(m)
    if folds:
        print(f"\nspeaker-independent CV (mean ± sd over {len(folds['pool'])} folds; ASED: sentences 01-02)")
        summary["cv"] = {c: summarise(f"{args.model} {c}", ms) for c, ms in sorted(folds.items())}
        if base:
            summary["cv_mfcc_lr"] = {c: summarise(f"MFCC+LR {c}", ms) for c, ms in sorted(base.items())}
    if summary["loco"]:
        print("\nleave one corpus out (trained on the other corpora; ASED: sentences 01-02)")
        for c, m in summary["loco"].items():
            extra = f"   MFCC+LR UAR {summary['loco_mfcc_lr'][c]['uar']:.3f}" if c in summary["loco_mfcc_lr"] else ""
            print(f"  {c:<10} " + "  ".join(f"{x} {m[x]:.3f}" for x in KEYS) + f"  ({m['n']} clips){extra}")
    if "random_split" in summary:
        print("random utterance split (LEAKY: test speakers also in training): "
              + "  ".join(f"{x} {summary['random_split'][x]:.3f}" for x in KEYS))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

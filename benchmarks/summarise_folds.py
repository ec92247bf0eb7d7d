"""Mean ± sd over the folds of a cross-validation folder whose folds ran as separate processes.

    python benchmarks/summarise_folds.py runs/bench-whisper-top2 [--folds 5] [--corpora ../shared/corpora]

Reads ``foldK/eval/report.json`` (what ``train()`` writes for each fold of
``benchmarks/accuracy.py --only-fold K``) and prints the same summary lines as accuracy.py.
With ``--corpora`` the figures are recomputed from each fold's test predictions as accuracy.py
computes them (ASED judged on its sentences 01-02, "pool" every judged clip).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

KEYS = ("accuracy", "macro_f1", "uar")


def line(name: str, reports: list[dict]) -> str:
    return f"{name:<28}" + "  ".join(
        f"{k} {np.mean([r[k] for r in reports]):.3f} ± {np.std([r[k] for r in reports]):.3f}" for k in KEYS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--corpora", help="recompute as accuracy.py does (ASED on sentences 01-02)")
    args = ap.parse_args(argv)
    paths = [Path(args.folder) / f"fold{k}" / "eval" / "report.json" for k in range(args.folds)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"missing fold reports: {', '.join(missing)}")
    reports = [json.loads(p.read_text()) for p in paths]
    if args.corpora:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from accuracy import breakdown, run_predictions

        from serkit.corpora import scan
        from serkit.emotions import DEFAULT_EMOTIONS

        utts = scan(args.corpora, emotions=DEFAULT_EMOTIONS)
        reports = []
        for k in range(args.folds):
            run = Path(args.folder) / f"fold{k}"
            labels = json.loads((run / "bundle" / "config.json").read_text())["labels"]
            r = breakdown(*run_predictions(utts, run, labels))
            reports.append({**r["pool"], "per_corpus": {c: m for c, m in r.items() if c != "pool"}})
    for k, r in enumerate(reports):
        print(f"fold{k}: " + "  ".join(f"{x} {r[x]:.3f}" for x in KEYS) + f"  ({r['n']} test clips)")
    print(line("model", reports))
    for corpus in sorted({c for r in reports for c in r["per_corpus"]}):
        print(line(f"  {corpus}", [r["per_corpus"][corpus] for r in reports if corpus in r["per_corpus"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

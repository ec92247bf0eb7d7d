"""Mean ± sd over the folds of a cross-validation folder whose folds ran as separate processes.

    python benchmarks/summarise_folds.py runs/bench-whisper-top2 [--folds 5]

Reads ``foldK/eval/report.json`` (what ``train()`` writes for each fold of
``benchmarks/accuracy.py --only-fold K``) and prints the same summary lines as accuracy.py.
"""
from __future__ import annotations

import argparse
import json
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
    args = ap.parse_args(argv)
    paths = [Path(args.folder) / f"fold{k}" / "eval" / "report.json" for k in range(args.folds)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"missing fold reports: {', '.join(missing)}")
    reports = [json.loads(p.read_text()) for p in paths]
    for k, r in enumerate(reports):
        print(f"fold{k}: " + "  ".join(f"{x} {r[x]:.3f}" for x in KEYS) + f"  ({r['n']} test clips)")
    print(line("model", reports))
    for corpus in sorted({c for r in reports for c in r["per_corpus"]}):
        print(line(f"  {corpus}", [r["per_corpus"][corpus] for r in reports if corpus in r["per_corpus"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

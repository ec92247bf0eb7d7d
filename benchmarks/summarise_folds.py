"""Mean ± sd over the folds of a cross-validation folder whose folds ran as separate processes.

    python benchmarks/summarise_folds.py runs/bench-whisper-top2 [--folds 5] [--corpora ../shared/corpora]
    python benchmarks/summarise_folds.py runs/bench-default --calibration

With ``--calibration``: each run folder's temperature, test ECE before and after it, and the
answers flagged uncertain (share, and how often a flagged and an unflagged answer is right), for
the CV folds and the leave-one-corpus-out runs (``loco-*``), then their means.

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
    ap.add_argument("--calibration", action="store_true", help="temperature, ECE and uncertain flags per run")
    args = ap.parse_args(argv)
    if args.calibration:
        return calibration(Path(args.folder))
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


def calibration(folder: Path) -> int:
    """Print the calibration table of every run folder under ``folder`` (from eval/report.json)."""
    runs = sorted(p.parent.parent for p in folder.glob("*/eval/report.json"))
    if not runs:
        raise SystemExit(f"no run folder with eval/report.json in {folder}")
    pct = lambda v: "    -" if v is None else f"{100 * v:5.1f}"  # noqa: E731
    print(f"{'run':<14} {'T':>6} {'ECE before':>10} {'ECE after':>9}   flagged %  right when flagged %  right otherwise %")
    groups: dict[str, list[dict]] = {}
    for run in runs:
        c = json.loads((run / "eval" / "report.json").read_text())["calibration"]
        f = c.get("uncertain_after") or {}
        print(f"{run.name:<14} {c['temperature']:6.3f} {c['ece_before']:10.3f} {c['ece_after']:9.3f}"
              + (f"   {pct(f['share']):>9}  {pct(f['accuracy_flagged']):>19}  {pct(f['accuracy_unflagged']):>17}"
                 if f else ""))
        groups.setdefault("loco" if run.name.startswith("loco-") else "cv", []).append(c)
    for name, cs in groups.items():
        print(f"mean {name:<9} {'':>6} {np.mean([c['ece_before'] for c in cs]):10.3f} "
              f"{np.mean([c['ece_after'] for c in cs]):9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

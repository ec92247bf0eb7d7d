"""What ``--refit-epochs`` gains, fold by fold, from runs that trained with it.

    python benchmarks/refit_gain.py runs/bench-fast-refit-seed0 --corpora ../shared/corpora [--folds 5]
    python benchmarks/refit_gain.py runs/bench-fast-loco-refit --corpora ../shared/corpora   # accuracy.py --loco

A run trained with ``--refit-epochs`` holds two models: the first run's best epoch
(``checkpoints/best.safetensors``: the model a run without the refit serves, byte for byte, since
the first run is the same training) and the refitted one (``bundle/``, trained again on the
training and validation speakers for that many epochs). The bundle's temperature was fitted on
the first run, so both are scored with it.

For every fold folder (``foldK``, and ``loco-CORPUS`` for a corpus left out whole), the first run's weights are put into a copy of the bundle (in a temporary
folder) and scored on the fold's test clips through the one scorer (``serkit evaluate``'s
:func:`serkit.evaluate_cmd.evaluate_bundle`); the refitted model's figures are read from the
fold's own ``eval/predictions.csv``. Both are judged as ``benchmarks/accuracy.py`` judges (ASED on
its sentences 01-02). Prints UAR per fold and per corpus, first run against refit, the means,
and the test ECE of each with the bundle's temperature.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import breakdown, run_predictions  # noqa: E402

from serkit.run_folder import BEST_WEIGHTS  # noqa: E402


def first_run_figures(run: Path, utts: list, work: Path) -> tuple[dict[str, dict], float]:
    """The first run's best epoch in a copy of ``run``'s bundle, scored on the fold's test clips:
    (judged figures, test ECE with the bundle's temperature)."""
    from serkit.evaluate_cmd import evaluate_bundle
    from serkit.inference import load_model

    copy = work / run.name
    shutil.copytree(run / "bundle", copy / "bundle")
    shutil.copyfile(run / BEST_WEIGHTS, copy / "bundle" / "model.safetensors")
    predictor = load_model(copy / "bundle", warmup=False)
    report = evaluate_bundle(predictor, run / "split.csv", "test", out=copy / "eval", progress=False)
    return breakdown(*run_predictions(utts, copy, predictor.labels)), report["calibration"]["ece_after"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--corpora", required=True, help="the corpora the runs trained on (../shared/corpora)")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)

    from serkit.corpora import scan
    from serkit.emotions import DEFAULT_EMOTIONS

    runs = [args.folder / f"fold{k}" for k in range(args.folds)] + sorted(args.folder.glob("loco-*"))
    runs = [r for r in runs if (r / "eval" / "predictions.csv").is_file()]
    if not runs:
        raise SystemExit(f"{args.folder}: no foldK/ or loco-*/eval/predictions.csv")
    configs = {r: json.loads((r / "bundle" / "config.json").read_text()) for r in runs}
    for r, c in configs.items():
        if "refit" not in c["training"] or not (r / BEST_WEIGHTS).is_file():
            raise SystemExit(f"{r}: not trained with --refit-epochs (no refit record or no best.safetensors)")
    utts = scan(args.corpora, emotions=DEFAULT_EMOTIONS)
    rows, eces = [], []
    with tempfile.TemporaryDirectory(prefix="serkit-refit-gain-") as tmp:
        for r, c in configs.items():
            first, ece_first = first_run_figures(r, utts, Path(tmp))
            refit = breakdown(*run_predictions(utts, r, c["labels"]))
            rows.append((r.name, c["training"]["refit"]["epochs"], first, refit))
            eces.append((ece_first, c["metrics"]["test"]["ece"]))
    corpora = sorted({c for _, _, f, _ in rows for c in f if c != "pool"})
    width = max(6, *(len(name) + 1 for name, *_ in rows))
    head = f"{'fold':<{width}}{'epochs':>7}  {'UAR first':>9} {'refit':>6}" + "".join(f"  {c:>15}" for c in corpora)
    print(head + "\n" + "-" * len(head))
    for name, epochs, first, refit in rows:
        cells = "".join(f"  {first[c]['uar']:.3f} -> {refit[c]['uar']:.3f}" if c in first else " " * 17
                        for c in corpora)
        print(f"{name:<{width}}{epochs:>7}  {first['pool']['uar']:>9.3f} {refit['pool']['uar']:>6.3f}{cells}")
    for key, label in (("pool", "pool"), *((c, c) for c in corpora)):
        a = [f[key]["uar"] for _, _, f, _ in rows if key in f]
        b = [g[key]["uar"] for _, _, _, g in rows if key in g]
        wins = sum(y > x for x, y in zip(a, b))
        print(f"mean {label:<8} first {np.mean(a):.3f} ± {np.std(a):.3f}   refit {np.mean(b):.3f} ± {np.std(b):.3f}"
              f"   refit higher in {wins} of {len(a)}")
    both = [np.mean([f[c]["uar"] for c in corpora if c in f]) for _, _, f, _ in rows], \
           [np.mean([g[c]["uar"] for c in corpora if c in g]) for _, _, _, g in rows]
    print(f"mean over the corpora: first {np.mean(both[0]):.3f}   refit {np.mean(both[1]):.3f}")
    print(f"test ECE (the first run's temperature): first {np.mean([a for a, _ in eces]):.3f}   "
          f"refit {np.mean([b for _, b in eces]):.3f}   per fold " + ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in eces))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

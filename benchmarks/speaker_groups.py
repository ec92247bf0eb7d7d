"""A batch job over a test set of many voices, as users run it: plain, each speaker one voice, all one voice.

    python benchmarks/speaker_groups.py [--model default] [--run runs/default] [--out runs/speaker-groups] [--force]

Writes the held-out test clips of the model's training split (``RUN/split.csv``) as a manifest CSV
(File, Speaker, Dataset), then runs three batch jobs over it through :func:`serkit.batch.run_batch`,
the code behind ``serkit predict MANIFEST --output FILE``: each clip alone; ``--same-speaker
--speakers manifest`` (each speaker's clips adapted to that voice); ``--same-speaker`` alone (every
clip taken as one voice, which they are not). Prints UAR over the judged clips (ASED on sentences
01-02; every clip of a speaker, judged or not, is part of their group), per corpus, and each
job's time. The acted corpora flatter the per-speaker line: each speaker says every emotion about
equally often.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from sklearn.metrics import recall_score

from serkit.batch import run_batch
from serkit.corpora import words_give_label
from serkit.inference import load_model
from serkit.manifest import read_manifest
from serkit.safety import claim_output_folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--run", default="runs/default", help="the model's training run (its split.csv)")
    ap.add_argument("--out", default="runs/speaker-groups", help="folder for the manifest and the jobs' rows")
    ap.add_argument("--force", action="store_true", help="write into an --out folder holding other files")
    args = ap.parse_args(argv)
    split = Path(args.run) / "split.csv"
    if not split.is_file():
        sys.exit(f"no {split}: train the model first (make default-model writes runs/default)")
    model = load_model(args.model)
    test = [u for u in read_manifest(split) if u.split == "test"]
    out = claim_output_folder(args.out, "speaker-groups", force=args.force, inputs=[split], flag="--out")   # never a folder of the user's
    manifest = out / "test.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["File", "Speaker", "Dataset"])
        w.writerows([str(u.path), u.speaker, u.corpus] for u in test)
    truth = {str(u.path): u for u in test}
    print(f"{args.model}: {len(test)} test clips ({sum(not words_give_label(u) for u in test)} judged), "
          f"{len({(u.corpus, u.speaker) for u in test})} speakers")
    for name, options in (("each clip alone", {}),
                          ("each speaker one voice (--speakers manifest)", {"same_speaker": True, "speakers": "manifest"}),
                          ("all clips one voice (wrongly)", {"same_speaker": True})):
        rows_path = out / f"{name.split(' (')[0].replace(' ', '-')}.csv"
        t = time.perf_counter()
        run_batch(model, [str(u.path) for u in test], rows_path, progress=False, force=True, inputs=[str(manifest)],
                  **options)
        seconds = time.perf_counter() - t
        rows = [r for r in csv.DictReader(rows_path.open()) if not words_give_label(truth[r["file"]])]
        y = [truth[r["file"]].emotion for r in rows]
        pred = [r["emotion"] or "none" for r in rows]
        line = f"{name:46s} UAR {recall_score(y, pred, labels=sorted(set(y)), average='macro'):.3f}"
        for c in sorted({u.corpus for u in test}):
            keep = [i for i, r in enumerate(rows) if truth[r["file"]].corpus == c]
            yc = [y[i] for i in keep]
            line += f"  {c} {recall_score(yc, [pred[i] for i in keep], labels=sorted(set(yc)), average='macro'):.3f}"
        print(line + f"  ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

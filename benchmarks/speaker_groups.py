"""A batch job over a test set of many voices, as users run it: plain, each speaker one voice, each voice found, all one voice.

    python benchmarks/speaker_groups.py [--model default] [--run runs/default] [--out runs/speaker-groups] [--force]
    python benchmarks/speaker_groups.py --choose-threshold [--run runs/default]
    python benchmarks/speaker_groups.py --model runs/loco-default/loco-emodb/bundle \
        --run runs/loco-default/loco-emodb --out runs/loco-groups-emodb     # a corpus never heard

The last form scores a leave-one-corpus-out run (``benchmarks/accuracy.py --loco --folds 0``): its
test set is one whole corpus the model never heard, a folder of many voices recorded alike, which
is harder to tell apart than the shipped split's test speakers of four corpora.

Writes the held-out test clips of the model's training split (``RUN/split.csv``) as a manifest CSV
(File, Speaker, Dataset), then runs three batch jobs over it through :func:`serkit.batch.run_batch`,
the code behind ``serkit predict MANIFEST --output FILE``: each clip alone; ``--same-speaker
--speakers manifest`` (each speaker's clips adapted to that voice); ``--same-speaker --speakers
voice`` (the voices the shipped speaker model tells apart, :mod:`serkit.voices`; no speaker labels
used); ``--same-speaker`` alone (every clip taken as one voice, which they are not). Prints UAR over the judged clips (ASED on sentences
01-02; every clip of a speaker, judged or not, is part of their group), per corpus, and each
job's time. The acted corpora flatter the per-speaker line: each speaker says every emotion about
equally often. After the voice job it prints how its groups match the true speakers (adjusted
Rand index, purity, groups against speakers).

``--choose-threshold`` prints the same match on the split's training and validation speakers (the
speakers the model learnt from; never the test speakers) for a range of clustering thresholds,
over all of them at once, over draws of 5 speakers and within each corpus; ``serkit.voices.THRESHOLD`` is the
threshold with the best adjusted Rand index over all of them at once (0.35; draws of 5 prefer
0.40, whose test figures RESULTS-default.md gives too: ``--threshold 0.4``).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, recall_score

from serkit import voices
from serkit.audio import decode_item
from serkit.batch import run_batch
from serkit.corpora import words_give_label
from serkit.inference import load_model
from serkit.inputs import speaker_groups
from serkit.manifest import read_manifest
from serkit.safety import claim_output_folder


def purity(truth: list, labels: list) -> float:
    """The share of items whose group's most common true speaker is theirs."""
    own: dict = {}
    for t, g in zip(truth, labels):
        own.setdefault(g, []).append(t)
    return sum(max(map(v.count, set(v))) for v in own.values()) / max(len(truth), 1)


def match(truth: list[str], labels) -> str:
    """How groups ``labels`` match the true speakers ``truth``: ARI, purity, counts."""
    labels = list(labels)
    return (f"ARI {adjusted_rand_score(truth, labels):.3f}  purity {purity(truth, labels):.3f}  "
            f"{len(set(labels))} groups for {len(set(truth))} speakers")


def choose_threshold(utts) -> None:
    """Clustering thresholds on the training speakers: all at once, and 40 draws of 5 speakers."""
    seen = [u for u in utts if u.split != "test"]
    t = time.perf_counter()
    e = np.stack([voices.embed_speech(decode_item(str(u.path))[1]) for u in seen])
    who = np.array([f"{u.corpus}/{u.speaker}" for u in seen])
    print(f"{len(seen)} training and validation clips, {len(set(who))} speakers, embedded in "
          f"{time.perf_counter() - t:.0f} s")
    rng = np.random.default_rng(0)
    speakers = sorted(set(who))
    draws = [np.flatnonzero(np.isin(who, rng.choice(speakers, 5, replace=False))) for _ in range(40)]
    corpus = np.array([u.corpus for u in seen])
    for threshold in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5):
        ari = [adjusted_rand_score(who[d], voices.cluster(e[d], threshold)) for d in draws]
        within = []                      # each corpus's speakers alone: one folder from one source
        for c in sorted(set(corpus)):
            m = corpus == c
            labels = voices.cluster(e[m], threshold)
            within.append(f"{c} {adjusted_rand_score(who[m], labels):.2f}/{purity(list(who[m]), list(labels)):.2f}")
        print(f"threshold {threshold:.2f}  all: {match(list(who), voices.cluster(e, threshold))}  "
              f"draws of 5: mean ARI {np.mean(ari):.3f}  within each corpus (ARI/purity): {', '.join(within)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--run", default="runs/default", help="the model's training run (its split.csv)")
    ap.add_argument("--out", default="runs/speaker-groups", help="folder for the manifest and the jobs' rows")
    ap.add_argument("--force", action="store_true", help="write into an --out folder holding other files")
    ap.add_argument("--threshold", type=float, default=voices.THRESHOLD,
                    help=f"clustering threshold of the voice job (default serkit's, {voices.THRESHOLD})")
    ap.add_argument("--choose-threshold", action="store_true",
                    help="only print how clustering thresholds match the training speakers")
    args = ap.parse_args(argv)
    split = Path(args.run) / "split.csv"
    if not split.is_file():
        sys.exit(f"no {split}: train the model first (make default-model writes runs/default)")
    voices.THRESHOLD = args.threshold            # what --speakers voice clusters at in this run
    if args.choose_threshold:
        choose_threshold(read_manifest(split))
        return 0
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
                          ("each voice found (--speakers voice)", {"same_speaker": True, "speakers": "voice"}),
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
        if options.get("speakers") == "voice":
            t = time.perf_counter()
            files = [str(u.path) for u in test]
            groups = speaker_groups(files, "voice")          # what --speakers voice groups by
            label = {i: g for g, members in enumerate(groups) for i in members}
            print(f"{'':46s} groups: {match([f'{u.corpus}/{u.speaker}' for u in test], [label[i] for i in range(len(files))])}"
                  f"  (grouping alone {time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

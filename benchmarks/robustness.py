"""Does a model depend on where the speech sits in the clip, or on the clip's length?

    python benchmarks/robustness.py [--model default|fast|BUNDLE] [--run RUN_FOLDER] [--limit N] [--forms F,...]

On the held-out test speakers of the model's own training split (``RUN/split.csv``, or the
shipped model's recorded test speakers in ``data/manifest.csv``), every clip is scored through
the one scorer (speech first, as ``serkit predict`` answers) in four forms:

1. as recorded;
2. trimmed: leading and trailing silence cut by an independent rule (frames 35 dB below the
   clip's loudest 25 ms frame), so nothing of the scorer's own detector is reused;
3. padded: 1.5 s of low noise (-60 dBFS) added before and after;
4. in a timeline: clips joined five at a time with 2 s of low noise between them, scored by
   ``predict_timeline`` (silero segments); each clip's answer is the segment that overlaps it most;
5. in a room: the whole clip in an image-source shoebox room with the babble of three other test
   speakers at 5-20 dB SNR (``benchmarks/rooms.py``'s test rooms, which training never uses).

Prints UAR and accuracy for each form and how often the answer equals the as-recorded one,
then each form's UAR per corpus, over the clips whose words do not give the emotion away (ASED
on sentences 01-02, as every serkit report judges; all clips are heard and lend their voices
to the babble).
``--forms recorded,room`` scores only those (the recordings always); each form's audio is the
same whichever are scored.
The issue's aim: trimmed within 0.03 UAR of as-recorded, and timeline segments like whole clips.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rooms import in_test_room, shoebox_rooms

from serkit.audio import decode_all
from serkit.corpora import words_give_label
from serkit.evaluation import metrics
from serkit.inference import load_model, resolve_model
from serkit.manifest import read_manifest
from serkit.rooms import other_speakers

NOISE_DBFS = -60.0
FORMS = ("recorded", "trimmed", "padded", "timeline", "room")


def trim_energy(wave: np.ndarray, sr: int, below_db: float = 35.0) -> np.ndarray:
    frame = int(0.025 * sr)
    n = len(wave) // frame
    if n < 2:
        return wave
    level = 10 * np.log10(np.mean(wave[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > level.max() - below_db)
    return wave[loud[0] * frame:(loud[-1] + 1) * frame]


def noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return (10 ** (NOISE_DBFS / 20) * rng.standard_normal(n)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="default, fast or a bundle folder")
    ap.add_argument("--run", help="the run folder whose split.csv says which clips are test (default: the "
                    "shipped model's test speakers in --manifest)")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--limit", type=int, default=0, help="score at most N test clips (0: all)")
    ap.add_argument("--forms", default=",".join(FORMS), help="which forms to score, comma-separated, of "
                    f"{', '.join(FORMS)} (the others' random draws are still made, so each form's audio is "
                    "the same whichever are chosen)")
    args = ap.parse_args(argv)
    chosen = set(args.forms.split(","))
    if chosen - set(FORMS):
        ap.error(f"unknown form(s) {', '.join(sorted(chosen - set(FORMS)))}; choose from {', '.join(FORMS)}")

    predictor = load_model(args.model)
    sr, labels = predictor.sample_rate, predictor.labels
    if args.run:
        utts = [u for u in read_manifest(Path(args.run) / "split.csv") if u.split == "test"]
    else:
        if not Path(args.manifest).is_file():
            print(f"no manifest {args.manifest}: run serkit prepare first (or pass --run)", file=sys.stderr)
            return 2
        cfg = json.loads((resolve_model(args.model) / "config.json").read_text())
        test = set(cfg["training"]["data"]["test_speakers"])
        utts = [u for u in read_manifest(args.manifest) if u.group in test]
    utts = [u for u in utts if u.emotion in labels]
    if args.limit:
        utts = utts[::max(1, len(utts) // args.limit)][:args.limit]
    waves = decode_all(utts, sr, progress=False)
    y = np.array([labels.index(u.emotion) for u in utts])
    rng = np.random.default_rng(0)

    def answers(ws: list[np.ndarray]) -> np.ndarray:
        return np.array([labels.index(p.emotion) if p.emotion else -1
                         for p in (predictor.prediction("", a) for a in predictor.analyse(ws))])

    forms = {"as recorded": answers(waves)}     # every other form is said as it compares with this one
    if "trimmed" in chosen:
        forms["trimmed (energy, -35 dB)"] = answers([trim_energy(w, sr) for w in waves])
    padded = [np.concatenate([noise(int(1.5 * sr), rng), w, noise(int(1.5 * sr), rng)]) for w in waves]
    if "padded" in chosen:
        forms["padded (1.5 s noise each side)"] = answers(padded)
    timeline = np.full(len(waves), -1)
    for start in range(0, len(waves), 5):
        group = list(range(start, min(start + 5, len(waves))))
        pieces, spans, t = [], [], 0
        for i in group:
            gap = noise(2 * sr, rng)
            pieces += [gap, waves[i]]
            spans.append((t + len(gap), t + len(gap) + len(waves[i])))
            t += len(gap) + len(waves[i])
        last_gap = noise(2 * sr, rng)
        if "timeline" not in chosen:
            continue
        tl = predictor.predict_timeline(np.concatenate(pieces + [last_gap]))
        for i, (a, b) in zip(group, spans):
            overlap = [max(0, min(b, s.end * sr) - max(a, s.start * sr)) for s in tl.segments]
            if overlap and max(overlap) > 0:
                timeline[i] = labels.index(tl.segments[int(np.argmax(overlap))].emotion)
    if "timeline" in chosen:
        forms["timeline segment"] = timeline
    rooms, groups = shoebox_rooms(), np.array([u.group for u in utts])
    heard = []
    for i, w in enumerate(waves):
        others = other_speakers(groups, i, rng)
        heard.append(in_test_room(w, rooms[rng.integers(len(rooms))], [waves[j] for j in others], rng.uniform(5, 20)))
    if "room" in chosen:
        forms["in a room (babble 5-20 dB)"] = answers(heard)

    # every clip was heard (and lent its voice to the babble); the figures judge those whose words
    # do not give the emotion away, as every serkit report does (serkit.corpora.words_give_label)
    judged = np.array([not words_give_label(u) for u in utts])
    y, forms = y[judged], {name: pred[judged] for name, pred in forms.items()}
    base = forms["as recorded"]
    print(f"{predictor.name}: {len(utts)} test clips of {len({u.group for u in utts})} held-out speakers "
          f"({', '.join(sorted({u.corpus for u in utts}))}); {int(judged.sum())} judged "
          f"({int((~judged).sum())} left out: their words give the emotion away)")
    print(f"{'form':<32}{'UAR':>7}{'accuracy':>10}{'no answer':>11}{'same answer as recorded':>26}")
    for name, pred in forms.items():
        m = metrics(y, pred)
        print(f"{name:<32}{m['uar']:>7.3f}{m['accuracy']:>10.3f}{int((pred < 0).sum()):>11}"
              f"{float(np.mean(pred == base)):>26.3f}")
    corpora = np.array([u.corpus for u in utts])[judged]
    names = sorted(set(corpora))
    print(f"\nUAR per corpus (its judged test clips)\n{'form':<32}" + "".join(f"{c:>9}" for c in names))
    for name, pred in forms.items():
        print(f"{name:<32}" + "".join(f"{metrics(y[corpora == c], pred[corpora == c])['uar']:>9.3f}" for c in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

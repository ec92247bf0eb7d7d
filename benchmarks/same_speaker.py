"""Same-speaker adaptation as users get it: `serkit predict --same-speaker` on held-out speakers.

    python benchmarks/same_speaker.py [--model default|BUNDLE] [--run runs/default] [--n 12]
                                      [--shares 0.3,0.6,0.9,1.0] [--timeline | --upload] [--mixed] [--call]
                                      [--vad auto|silero|energy|none]

On the held-out test speakers of the model's training split (``RUN/split.csv``), the judged clips
(ASED on sentences 01-02) of each speaker are drawn into batches of ``--n`` clips, ``share`` of
them one emotion (each emotion in turn; a share is capped by the clips a speaker has), as
``benchmarks/head_variants.py --only offset`` draws them. Each batch is answered twice through the
Predictor: :meth:`~serkit.inference.Predictor.predict_files` (each clip alone) and
:meth:`~serkit.inference.Predictor.predict_same_speaker` (the batch said to be one voice). Prints
UAR plain and adapted for each share, over all batches' clips (a clip may be in several batches),
and per corpus. With ``--timeline`` each batch is one recording instead: its clips joined with 1 s of
low noise (-60 dBFS) between them, scored by ``predict_timeline`` (silero segments) with and without
``same_speaker``; each clip's answer is the segment that overlaps it most (as robustness.py's
timeline form). ``--upload`` joins them the same way and answers them as the web API answers an
upload with and without ``same_speaker`` (the scorer's units; ``Predictor.analyse_one_voice``).
``--mixed`` draws each batch from all the test speakers of one corpus instead: what adapting does
to clips wrongly said to be one voice. ``--call`` makes each recording a conversation of two test
speakers of one corpus (``--n`` / 2 clips of each, drawn as above, taking turns; at most 6 pairs
of a corpus's speakers) and answers it three ways: plain, as one voice (``same_speaker``,
wrongly), and as the voices told apart (``speakers="voice"``: ``serkit predict --timeline
--same-speaker --speakers voice``); it also prints how the segments' voices match the speakers
(adjusted Rand index, purity).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from sklearn.metrics import recall_score

from serkit.corpora import words_give_label
from serkit.inference import load_model
from serkit.manifest import read_manifest


def uar(y: list[str], pred: list[str]) -> float:
    return float(recall_score(y, pred, labels=sorted(set(y)), average="macro"))


def batches(rows: list, n: int, share: float, rng: np.random.Generator) -> list[list]:
    """Batches of ``n`` of one speaker's clips, ``share`` of each one emotion, each emotion in turn."""
    out = []
    for e in sorted({u.emotion for u in rows}):
        main = [u for u in rows if u.emotion == e]
        rest = [u for u in rows if u.emotion != e]
        k = min(len(main), int(round(n * share)))
        pick = [main[i] for i in rng.choice(len(main), k, replace=False)]
        pick += [rest[i] for i in rng.choice(len(rest), min(len(rest), n - k), replace=False)]
        if len(pick) >= 4:
            out.append(pick)
    return out


def calibration_line(labels: list[str], kept: list) -> str:
    """Calibration of answers (truth, Prediction): ECE, accuracy against mean confidence, and the
    uncertain flag (share of answers flagged, accuracy of flagged and of unflagged answers)."""
    from serkit.evaluation import expected_calibration_error

    probs = np.array([[r.probabilities[k] for k in labels] for _, r in kept])
    y = np.array([labels.index(e) for e, _ in kept])
    right = probs.argmax(1) == y
    flag = np.array([bool(r.uncertain) for _, r in kept])
    acc = lambda m: f"{right[m].mean():.3f}" if m.any() else "-"   # noqa: E731
    return (f"ECE {expected_calibration_error(probs, y):.3f}  accuracy {right.mean():.3f}  mean confidence "
            f"{probs.max(1).mean():.3f}  uncertain {flag.mean():.1%} (accuracy {acc(flag)}, others {acc(~flag)})")


def timeline_answers(model, batch: list, rng: np.random.Generator, upload: bool = False,
                     voices: bool = False, vad: str = "auto") -> tuple[list, ...]:
    """The batch's clips as one recording: each clip's answer (emotion, probabilities, uncertain)
    from the segment overlapping it most, clip by clip and as one voice (None where no segment
    overlaps it); segments of the timeline, or with ``upload`` the scorer's units as the web API
    answers an upload (``same_speaker``). ``voices``: a third list, the timeline's voices told
    apart (``speakers="voice"``; its answers carry the segment's ``voice``). ``vad``: the timeline's
    detector (``none``: fixed pieces of one window)."""
    from serkit.audio import load_audio

    sr = model.sample_rate
    pieces, spans, t = [], [], 0
    for u in batch:
        gap = (rng.standard_normal(sr) * 1e-3).astype(np.float32)
        wave = load_audio(u.path, sr)
        pieces += [gap, wave]
        spans.append((t + sr, t + sr + len(wave)))
        t += sr + len(wave)
    recording = np.concatenate(pieces + [(rng.standard_normal(sr) * 1e-3).astype(np.float32)])
    out = []
    for same in (False, True) + (("voice",) if voices else ()):
        if same == "voice":
            found = [(g.start, g.end, g) for g in
                     model.predict_timeline(recording, vad=vad, same_speaker=True, speakers="voice").segments]
        elif upload:        # the web API's path: the scorer's units of the whole upload
            a = model.analyse_one_voice(recording) if same else model.analyse([recording])[0]
            found = [(s / sr, e / sr, SimpleNamespace(emotion=model.labels[int(np.argmax(q))],
                                                       probabilities=dict(zip(model.labels, q.tolist())),
                                                       uncertain=model.scorer.is_uncertain(q)))
                     for (s, e), q in zip(a.segments, a.segment_probabilities if a.segments else [])]
        else:             # timeline segments carry emotion, probabilities and uncertain as answers do
            found = [(g.start, g.end, g) for g in model.predict_timeline(recording, vad=vad, same_speaker=same).segments]
        answers = []
        for a, b in spans:
            overlap = [max(0, min(b, end * sr) - max(a, start * sr)) for start, end, _ in found]
            answers.append(found[int(np.argmax(overlap))][2] if overlap and max(overlap) > 0 else None)
        out.append(answers)
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--run", default="runs/default", help="the model's training run (its split.csv)")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--shares", default="0.3,0.6,0.9,1.0")
    ap.add_argument("--timeline", action="store_true", help="each batch as one recording, through predict_timeline")
    ap.add_argument("--mixed", action="store_true", help="each batch drawn from all the test speakers of one "
                    "corpus (what --same-speaker does to clips that are NOT one voice)")
    ap.add_argument("--upload", action="store_true", help="each batch as one recording, answered as the web API "
                    "answers an upload (Predictor.analyse_one_voice)")
    ap.add_argument("--call", action="store_true", help="each recording two test speakers of one corpus taking "
                    "turns, answered plain, as one voice and as the voices told apart (speakers='voice')")
    ap.add_argument("--vad", default="auto", help="--timeline and --call: the timeline's detector (none: fixed "
                    "pieces of one window, as serkit predict --timeline --vad none)")
    args = ap.parse_args(argv)
    if args.call:
        return calls(args)
    split = Path(args.run) / "split.csv"
    if not split.is_file():
        sys.exit(f"no {split}: train the model first (make default-model writes runs/default)")
    model = load_model(args.model)
    if not model.can_adapt:
        sys.exit(f"{args.model} has no speaker head")
    test = [u for u in read_manifest(split) if u.split == "test" and not words_give_label(u)]
    speakers = sorted({(u.corpus, "*" if args.mixed else u.speaker) for u in test})
    print(f"{args.model}: {len(test)} judged test clips, {len({(u.corpus, u.speaker) for u in test})} speakers; "
          f"batches of {args.n}" + (", each of several speakers of one corpus" if args.mixed else "")
          + (", each one recording (timeline)" if args.timeline else "")
          + (", each one recording (web upload)" if args.upload else ""))
    for share in (float(s) for s in args.shares.split(",")):
        rng, t = np.random.default_rng(0), time.time()
        truth, plain, adapted, corpus = [], [], [], []
        kept_plain, kept_adapted = [], []      # (truth, Prediction) of clip answers, for calibration
        for c, s in speakers:
            rows = [u for u in test if u.corpus == c and s in ("*", u.speaker)]
            # a corpus's test speakers as one group: as many draws as the speakers give one group each
            draws = len({u.speaker for u in rows}) if args.mixed else 1
            for batch in (b for _ in range(draws) for b in batches(rows, args.n, share, rng)):
                if args.timeline or args.upload:
                    alone, together = timeline_answers(model, batch, rng, upload=args.upload, vad=args.vad)
                else:
                    paths = [str(u.path) for u in batch]
                    alone, together = model.predict_files(paths), model.predict_same_speaker(paths)
                for kept, answers in ((kept_plain, alone), (kept_adapted, together)):
                    kept += [(u.emotion, r) for u, r in zip(batch, answers) if r is not None and r.emotion]
                alone, together = ([r.emotion if r is not None else None for r in answers] for answers in (alone, together))
                for u, a, b in zip(batch, alone, together):
                    if a and b:                          # clips with speech
                        truth.append(u.emotion), plain.append(a), adapted.append(b)
                        corpus.append(u.corpus)
        line = f"share {share:.0%}: {len(truth)} clip answers  plain {uar(truth, plain):.3f}  adapted {uar(truth, adapted):.3f}"
        for c in sorted(set(corpus)):
            m = [i for i, k in enumerate(corpus) if k == c]
            line += (f"  {c} {uar([truth[i] for i in m], [plain[i] for i in m]):.3f}"
                     f"->{uar([truth[i] for i in m], [adapted[i] for i in m]):.3f}")
        print(line + f"  ({time.time() - t:.0f} s)", flush=True)
        for name, kept in (("plain", kept_plain), ("adapted", kept_adapted)):
            if kept:
                print(f"  {name:8s}" + calibration_line(model.labels, kept), flush=True)
    return 0


def calls(args) -> int:
    """``--call``: conversations of two test speakers, plain / one voice / voices told apart."""
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score
    from speaker_groups import purity     # benchmarks/ is on the path when this runs as a script

    model = load_model(args.model)
    test = [u for u in read_manifest(Path(args.run) / "split.csv") if u.split == "test" and not words_give_label(u)]
    print(f"{args.model}: conversations of two test speakers of one corpus, {args.n // 2} clips each, taking turns"
          + (f" (timeline vad {args.vad})" if args.vad != "auto" else ""))
    for share in (float(s) for s in args.shares.split(",")):
        rng, t = np.random.default_rng(0), time.time()
        truth, answers, ari, pure = [], ([], [], []), [], []
        for c in sorted({u.corpus for u in test}):
            people = sorted({u.speaker for u in test if u.corpus == c})
            pairs = list(combinations(people, 2))
            for a, b in [pairs[i] for i in sorted(rng.choice(len(pairs), min(6, len(pairs)), replace=False))]:
                drawn = [batches([u for u in test if u.corpus == c and u.speaker == p], args.n // 2, share, rng)
                         for p in (a, b)]
                for x, y in zip(*drawn):
                    call = [u for pair in zip(x, y) for u in pair]
                    got = timeline_answers(model, call, rng, voices=True, vad=args.vad)
                    keep = [i for i in range(len(call)) if all(g[i] is not None and g[i].emotion for g in got)]
                    truth += [call[i].emotion for i in keep]
                    for k, g in enumerate(got):
                        answers[k].extend(g[i].emotion for i in keep)
                    who, heard = [call[i].speaker for i in keep], [got[2][i].voice for i in keep]
                    ari.append(adjusted_rand_score(who, heard))
                    pure.append(purity(who, heard))
        print(f"share {share:.0%}: {len(truth)} clip answers  plain {uar(truth, answers[0]):.3f}  one voice "
              f"{uar(truth, answers[1]):.3f}  voices told apart {uar(truth, answers[2]):.3f}  (voices: ARI "
              f"{np.mean(ari):.3f}, purity {np.mean(pure):.3f}; {time.time() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

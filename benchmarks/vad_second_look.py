"""How many speech clips the speech detector misses, and how many non-speech clips it accepts,
at silero's first look and with the scorer's second look (``serkit.vad.clip_speech``).

    python benchmarks/vad_second_look.py [--manifest data/manifest.csv] [--rooms 3000]

The shipped second look puts 0.5 s of silence before the clip; the variants change that or the
threshold, and "warm" runs silero over the clip once before scoring it (no silence). Every
six-emotion clip of the manifest as recorded, ``--rooms`` of them in an image-source test
room over three other speakers' babble at 5-20 dB (``benchmarks/rooms.py``'s test rooms), and
60 synthetic 3 s clips of each of ten kinds of non-speech at -50 to -6 dBFS. Variants of the
second look are printed beside the shipped one. About 3 minutes here.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rooms import in_test_room, shoebox_rooms  # noqa: E402

from serkit.data import decode_all  # noqa: E402
from serkit.emotions import DEFAULT_EMOTIONS  # noqa: E402
from serkit.manifest import read_manifest  # noqa: E402
from serkit.rooms import other_speakers  # noqa: E402
from serkit.vad import (FRAME, SECOND_LOOK_PAD_S, SECOND_LOOK_THRESHOLD, SileroVAD, clip_speech,  # noqa: E402
                        detect_speech, frames_of, speech_segments)

SR = 16000
#: (silence before the clip in s, threshold); "warm": no silence, silero's state warmed on the clip
VARIANTS = [(SECOND_LOOK_PAD_S, SECOND_LOOK_THRESHOLD), (SECOND_LOOK_PAD_S, 0.5), (SECOND_LOOK_PAD_S, 0.25),
            (1.0, SECOND_LOOK_THRESHOLD), ("warm", SECOND_LOOK_THRESHOLD)]


def second_look(wave: np.ndarray, pad_s: float | str, threshold: float) -> bool:
    """Whether speech is found in ``wave`` by the scorer's ``clip_speech`` with ``pad_s`` of
    silence and ``threshold`` for its second look, or (``pad_s="warm"``) by silero at
    ``threshold`` with its state warmed by a first pass over the clip itself."""
    if pad_s == "warm":
        vad = SileroVAD()
        for frames in frames_of(iter([wave])):
            vad(frames)
        vad.context[:] = 0
        probs = np.concatenate([vad(frames) for frames in frames_of(iter([wave]))])
        return bool(speech_segments(probs, len(wave), SR, FRAME, threshold=threshold))
    return bool(clip_speech(wave, SR, "silero", pad_s=pad_s, threshold=threshold))


def non_speech(rng: np.random.Generator, rooms: list[np.ndarray], n: int = 3 * SR):
    """(kind, clip) for 60 clips of each of ten kinds of sound that is not speech."""
    t = np.arange(n) / SR

    def coloured(alpha: float) -> np.ndarray:
        spectrum = np.fft.rfft(rng.standard_normal(n)) / (np.arange(n // 2 + 1) + 1.0) ** (alpha / 2)
        return np.fft.irfft(spectrum, n)

    def clicks() -> np.ndarray:
        x = np.zeros(n)
        for p in rng.integers(0, n - 200, 30):
            x[p:p + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
        return x

    def chord_changes() -> np.ndarray:
        x = np.zeros(n)
        for k in range(n // 8000):
            x[k * 8000:(k + 1) * 8000] = sum(np.sin(2 * np.pi * f * t[:8000]) for f in rng.uniform(100, 1000, 3)) * np.hanning(8000)
        return x

    kinds = {
        "white noise": lambda: rng.standard_normal(n),
        "pink noise": lambda: coloured(1),
        "brown noise": lambda: coloured(2),
        "tone": lambda: np.sin(2 * np.pi * rng.uniform(100, 2000) * t),
        "chord": lambda: sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 1000, 4)),
        "noise at syllable rate": lambda: coloured(1) * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t)),
        "clicks": clicks,
        "noise bursts in a room": lambda: fftconvolve(coloured(1) * (rng.random(n) < 0.001), rooms[rng.integers(len(rooms))])[:n],
        "pitch sweep (vibrato)": lambda: np.sin(2 * np.pi * np.cumsum(rng.uniform(100, 300) * (1 + 0.5 * np.sin(4 * np.pi * t))) / SR),
        "chord changes": chord_changes,
    }
    for kind, make in kinds.items():
        for _ in range(60):
            x = make()
            level = 10 ** (rng.uniform(-50, -6) / 20)
            yield kind, (x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * level).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--rooms", type=int, default=3000, help="clips also heard in a test room over babble")
    args = ap.parse_args(argv)
    if not Path(args.manifest).is_file():
        raise SystemExit(f"no manifest {args.manifest}: run serkit prepare ../shared/corpora -o {args.manifest}")
    t0 = time.time()
    utts = [u for u in read_manifest(args.manifest) if u.emotion in DEFAULT_EMOTIONS]
    waves = decode_all(utts, progress=False)
    rng, rooms = np.random.default_rng(3), shoebox_rooms()
    speaker = np.array([f"{u.corpus}/{u.speaker}" for u in utts])

    def in_room(i: int) -> np.ndarray:
        others = [waves[j] for j in other_speakers(speaker, i, rng)]
        return in_test_room(waves[i], rooms[rng.integers(len(rooms))], others, rng.uniform(5, 20))

    picked = rng.choice(len(waves), min(args.rooms, len(waves)), replace=False)
    conditions = {"recorded": [(utts[i].corpus, waves[i]) for i in range(len(waves))],
                  "room+babble": [(utts[i].corpus, in_room(i)) for i in picked]}
    print(f"{len(utts)} clips; silero at 0.5, then the second look (silence before in s, threshold; "
          f"shipped: {SECOND_LOOK_PAD_S}, {SECOND_LOOK_THRESHOLD}) on the clips it missed")
    for name, clips in conditions.items():
        missed = [(c, w) for c, w in clips if not detect_speech(w, SR, "silero")]
        line = f"{name:<12} no speech at the first look {len(missed)}/{len(clips)} {dict(Counter(c for c, _ in missed))}"
        for pad, th in VARIANTS:
            left = [c for c, w in missed if not second_look(w, pad, th)]
            how = "state warmed on the clip" if pad == "warm" else f"{pad} s before"
            line += f"\n{'':<12} after a second look ({how}, threshold {th}): {len(left)} {dict(Counter(left))}"
        print(line, flush=True)
    accepted, total = Counter(), Counter()
    for kind, x in non_speech(rng, rooms):
        total[kind] += 1
        first = bool(detect_speech(x, SR, "silero"))
        accepted[(kind, "first look")] += first
        for pad, th in VARIANTS:
            accepted[(kind, f"{pad} s, {th}")] += first or second_look(x, pad, th)
    print("non-speech taken for speech (of 60 each):    first look | " + " | ".join(f"{p}{'' if p == 'warm' else ' s'}, {t}" for p, t in VARIANTS))
    for kind in total:
        cols = [accepted[(kind, "first look")]] + [accepted[(kind, f"{p} s, {t}")] for p, t in VARIANTS]
        print(f"  {kind:<28} " + "  ".join(f"{c:>10}" for c in cols))
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

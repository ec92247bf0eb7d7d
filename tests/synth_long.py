"""Synthetic long recordings for the timeline tests.

- :func:`tone_recording`: clips of ``synth.tone_clip`` (one "emotion" each) separated by
  near-silence, with the true segment bounds. Tones are not speech to a speech detector, so
  these go with the energy detector or fixed windows.
- :func:`babble`: speech-like sound for Silero VAD: a pulse train at a given pitch through three
  formant resonators, cut into 120-280 ms syllables with a noise burst before each.
- :func:`write_long_recording`: a recording of many minutes written to disk block by block,
  never held in memory whole.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from synth import SR, tone_clip

#: First three formants (Hz) of six vowels (a, i, u, e, o, ae).
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
          (660, 1720, 2410)]


def quiet(seconds: float, rng: np.random.Generator, level: float = 0.003) -> np.ndarray:
    return (level * rng.standard_normal(int(round(seconds * SR)))).astype(np.float32)


def tone_recording(plan: list[tuple[str | None, float]], seed: int = 1) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """``plan``: (emotion or None for silence, seconds) pieces in order. Returns the waveform
    and the true (start, end, emotion) of each tone."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [], [], 0.0
    for emotion, seconds in plan:
        parts.append(tone_clip(emotion, seconds, rng) if emotion else quiet(seconds, rng))
        if emotion:
            truth.append((t, t + seconds, emotion))
        t += seconds
    return np.concatenate(parts), truth


def babble(seconds: float, f0: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like syllables around pitch ``f0`` (Hz) for ``seconds``."""
    out, total, n_total = [], 0, int(seconds * SR)
    while total < n_total:
        d = rng.uniform(0.12, 0.28)
        n = int(d * SR)
        t = np.arange(n) / SR
        f = f0 * rng.uniform(0.85, 1.15) * (1 + 0.1 * np.sin(np.pi * t / d))
        phase = np.cumsum(2 * np.pi * f / SR)
        x = np.zeros(n)
        x[np.where(np.diff(np.floor(phase / (2 * np.pi))) > 0)[0]] = 1.0
        for fc, bw in zip(VOWELS[rng.integers(len(VOWELS))], (90, 110, 160)):
            r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * fc / SR
            x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
        x = x * np.sin(np.pi * t / d) ** 0.6
        x = 0.3 * x / (np.abs(x).max() + 1e-9)
        burst = 0.1 * rng.standard_normal(int(0.03 * SR)) * np.hanning(int(0.03 * SR))
        piece = np.concatenate([burst, x, np.zeros(int(rng.uniform(0.02, 0.08) * SR))])
        out.append(piece)
        total += len(piece)
    return np.concatenate(out)[:n_total].astype(np.float32)


def write_long_recording(path: str | Path, minutes: float, rate: int = 44100, seed: int = 0,
                         gap: tuple[float, float] = (20.0, 40.0), tone: tuple[float, float] = (1.0, 3.0)) -> tuple[Path, int]:
    """``minutes`` of near-silence (``gap`` seconds) broken by tones (``tone`` seconds) at
    ``rate`` Hz, 16-bit, written piece by piece (memory stays at one piece). Returns the path and
    the number of tones."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    total, written, tones = int(minutes * 60 * rate), 0, 0
    noise = (0.003 * rng.standard_normal(rate)).astype(np.float32)         # one second, reused
    emotions = ("angry", "happy", "sad")
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        while written < total:
            n = min(int(rng.uniform(*gap) * rate), total - written)
            f.write(np.resize(noise, n))
            written += n
            n = min(int(rng.uniform(*tone) * rate), total - written)
            if n > 0.5 * rate:
                f.write(tone_clip(emotions[tones % 3], n / rate, rng, sr=rate)[:n])
                written += n
                tones += 1
    return path, tones

"""Simulated rooms for training: a clip as a microphone across a reverberant room hears it, over
other voices or noise.

The corpora are close-talking studio or home recordings; users' calls and voice notes are not.
Trained on the recordings alone, the default head falls from UAR 0.764 to 0.553 on held-out
speakers heard in image-source rooms over babble (5-fold CV, ``benchmarks/rooms.py``). With one
room view of each training clip beside the clip itself (``serkit train --rooms``, on by default
for an encoder head) it scores 0.625 there, and 0.758 on the recordings.

The room is a statistical one (Polack's model): the impulse response is Gaussian noise under an
exponential decay set by a reverberation time RT60, after a direct path whose energy against the
tail (the direct-to-reverberant ratio) is drawn too. The noise is, half of the time, the babble
of other speakers' clips in the same room, else white or brown-tinted noise. It is cheap and has
no room geometry on purpose: the benchmark scores rooms of another kind (image-source shoebox
rooms from pyroomacoustics), so what it measures is transfer to rooms the head never heard, not
a fit to this generator.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from scipy.signal import fftconvolve

from serkit.manifest import Utterance

RT60_S = (0.2, 0.9)         # reverberation time, uniform
DRR_DB = (0.0, 12.0)        # direct-to-reverberant energy ratio, uniform
BABBLE_SNR_DB = (5.0, 25.0)  # other voices in the room, uniform
NOISE_SNR_DB = (10.0, 30.0)  # stationary noise, uniform
BABBLE_SHARE = 0.5          # share of views whose noise is babble (when voices are given)
BABBLE_VOICES = 3
#: Share of a waveform model's training clips (the CNN-LSTM's, a fine-tuned encoder's) heard in a
#: room (serkit.data.Augment); an encoder head instead gets one room view beside each clip.
ROOM_SHARE = 0.3
ROOM_VIEW = 1000            # the room view's part of its seed (a training run's augmented views are 1..)
ROOMS_NOTE = ("one more view of each training clip: its speech span reverberated (statistical room, RT60 "
              "0.2-0.9 s) over the babble of 3 other training speakers (5-25 dB SNR) or stationary noise "
              "(10-30 dB), serkit.rooms")


def impulse_response(rng: np.random.Generator, rt60: float, drr_db: float, sr: int) -> np.ndarray:
    """A statistical room impulse response: a direct path, then exponentially decaying noise
    (60 dB down after ``rt60`` seconds) ``drr_db`` below it in energy."""
    n = int(sr * 1.2 * rt60)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[:max(1, int(sr * rng.uniform(0.001, 0.005)))] = 0.0          # the first reflections arrive late
    h = np.concatenate([[np.sqrt(np.sum(tail ** 2) * 10 ** (drr_db / 10))], tail[1:]])
    return (h / np.abs(h).max()).astype(np.float32)


def _at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    power = float(np.mean(signal ** 2)) + 1e-12
    return signal + noise * np.sqrt(power / (float(np.mean(noise ** 2)) + 1e-12) / 10 ** (snr_db / 10))


def room_view(wave: np.ndarray, rng: np.random.Generator, voices: list[np.ndarray] = (), sr: int = 16000) -> np.ndarray:
    """``wave`` reverberated in a random room over noise: half of the time (when ``voices``, other
    speakers' clips, are given) the babble of those voices in the same room at 5-25 dB SNR, else
    white or brown-tinted noise at 10-30 dB. The same length and loudness as ``wave``."""
    x = np.asarray(wave, np.float32)
    if len(x) == 0:
        return x.copy()
    h = impulse_response(rng, rng.uniform(*RT60_S), rng.uniform(*DRR_DB), sr)
    y = fftconvolve(x, h)[:len(x)]
    y *= np.sqrt((float(np.mean(x ** 2)) + 1e-12) / (float(np.mean(y ** 2)) + 1e-12))
    voices = [np.asarray(v, np.float64) for v in voices if len(v)]
    if voices and rng.random() < BABBLE_SHARE:
        babble = np.sum([np.resize(v, len(x)) / (np.sqrt(np.mean(v ** 2)) + 1e-9) for v in voices], axis=0)
        return _at_snr(y, fftconvolve(babble, h)[:len(x)], rng.uniform(*BABBLE_SNR_DB)).astype(np.float32)
    noise = rng.standard_normal(len(y))
    if rng.random() < 0.5:                               # brown-tinted: more low-frequency rumble
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(64) / 64, "full")[31:31 + len(noise)]   # "same", also under 64 samples
        noise /= noise.std() + 1e-9
    return _at_snr(y, noise, rng.uniform(*NOISE_SNR_DB)).astype(np.float32)


def other_speakers(groups: np.ndarray, i: int, rng: np.random.Generator, n: int = BABBLE_VOICES) -> np.ndarray:
    """Indices of ``n`` random clips (fewer if there are not so many) whose speaker (``groups``)
    is not clip ``i``'s: the voices of a room's babble."""
    others = np.flatnonzero(groups != groups[i])
    return rng.choice(others, min(n, len(others)), replace=False) if len(others) else others


def clip_seed(utt: Utterance) -> int:
    """A clip's part of its training views' seeds: the same in every run and fold."""
    return zlib.crc32(str(utt.path).encode())


def room_views(crops: list[np.ndarray], owner: Sequence[int], utts: Sequence[Utterance], seed: int,
               sr: int = 16000) -> list[int]:
    """Appends to ``crops`` a room view of each clip's speech crop (``crops[k]`` of clip
    ``owner[k]``; the first of each clip's crops), its babble (half of the time) drawn from the
    other speakers among these clips, and returns the owners of the added crops. Each view is
    seeded by ``seed`` and the clip, so a run over the same clips makes the same views (and
    finds their encoder statistics cached)."""
    first: dict[int, int] = {}
    for k, i in enumerate(owner):
        first.setdefault(i, k)
    clips = list(first)
    groups = np.array([utts[i].group for i in clips])
    for n, i in enumerate(clips):
        rng = np.random.default_rng([seed, ROOM_VIEW, clip_seed(utts[i])])
        picked = other_speakers(groups, n, rng)
        crops.append(room_view(crops[first[i]], rng, [crops[first[clips[j]]] for j in picked], sr))
    return clips

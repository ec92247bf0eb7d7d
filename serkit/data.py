"""Decoded clips in memory and the torch Datasets that feed training and evaluation.

Every file is decoded once (through the on-disk :class:`~serkit.audio.WaveformCache`), then
epochs only crop, pad and augment arrays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from rich.progress import track
from torch.utils.data import Dataset

from serkit.audio import SAMPLE_RATE, WaveformCache, load_audio, pad_or_trim
from serkit.config import DEFAULT_CACHE
from serkit.manifest import Utterance



def decode_all(utts: list[Utterance], sample_rate: int = SAMPLE_RATE,
               cache_dir: str | os.PathLike | None = DEFAULT_CACHE / "waveforms",
               progress: bool = True) -> list[np.ndarray]:
    """Waveforms of ``utts`` in order (cached on disk when ``cache_dir`` is given).

    Raises :class:`~serkit.audio.AudioError` naming the first file that cannot be decoded:
    a manifest should only hold files that ``prepare`` could read.
    """
    cache = WaveformCache(cache_dir, sample_rate) if cache_dir is not None else None
    load = cache.load if cache else (lambda p: load_audio(p, sample_rate))
    items = track(utts, description="decoding audio", disable=not progress, transient=True)
    return [load(u.path) for u in items]


@dataclass
class Augment:
    """Waveform augmentation for training: speed perturbation, random gain and additive noise
    (the random crop of long clips is in the dataset)."""

    speed: tuple[float, float] = (0.9, 1.1)   # resampling factor (tempo and pitch together)
    speed_prob: float = 0.5
    gain_db: float = 6.0            # uniform in [-gain_db, +gain_db]
    noise_prob: float = 0.5         # chance of adding white noise
    snr_db: tuple[float, float] = (15.0, 40.0)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.speed_prob:
            factor = rng.uniform(*self.speed)
            wave = soxr.resample(wave, SAMPLE_RATE * factor, SAMPLE_RATE, quality="LQ").astype(np.float32)
        wave = wave * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if rng.random() < self.noise_prob:
            power = float(np.mean(wave ** 2)) + 1e-10
            snr = rng.uniform(*self.snr_db)
            noise = rng.standard_normal(wave.shape[-1]).astype(np.float32)
            wave = wave + noise * np.float32(np.sqrt(power / 10 ** (snr / 10)))
        return wave


class ClipDataset(Dataset):
    """(waveform of ``clip_samples``, valid length, label index) for each clip.

    With ``train=True`` a clip longer than the window is cropped at random and augmented;
    otherwise it is centre-cropped and left alone.
    """

    def __init__(self, waves: list[np.ndarray], labels: list[int], clip_samples: int,
                 train: bool = False, augment: Augment | None = None, seed: int = 0):
        self.waves, self.labels, self.clip_samples = waves, labels, clip_samples
        self.train, self.augment = train, augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int):
        wave = self.waves[i]
        if self.train and self.augment is not None:
            wave = self.augment(wave, self.rng)
        length = min(wave.shape[0], self.clip_samples)
        wave = pad_or_trim(wave, self.clip_samples, crop="random" if self.train else "center", rng=self.rng)
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), length, self.labels[i]

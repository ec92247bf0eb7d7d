"""Decoded clips in memory and the torch Datasets that feed training and evaluation.

Every file is decoded once (through the on-disk :class:`~serkit.audio.WaveformCache`), then
epochs only crop, pad and augment arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset

from serkit.audio import SAMPLE_RATE, decode_all, pad_or_trim  # noqa: F401  (decode_all re-exported)



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

    ``spans`` ([start, end) samples per clip, e.g. the speech the scorer would read) limit each
    clip to its speech: in training widened at random by up to ``widen`` samples at each end
    (into the clip's own silence, so the model does not depend on where the detector cuts).
    With ``train=True`` a clip longer than the window is cropped at random and augmented;
    otherwise it is centre-cropped and left alone.
    """

    def __init__(self, waves: list[np.ndarray], labels: list[int], clip_samples: int,
                 train: bool = False, augment: Augment | None = None, seed: int = 0,
                 spans: list[tuple[int, int]] | None = None, widen: int = 0):
        self.waves, self.labels, self.clip_samples = waves, labels, clip_samples
        self.train, self.augment = train, augment
        self.spans, self.widen = spans, widen
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int):
        wave = self.waves[i]
        if self.spans is not None:
            s, e = self.spans[i]
            if self.train and self.widen:
                s = max(0, s - int(self.rng.integers(0, self.widen + 1)))
                e = min(len(wave), e + int(self.rng.integers(0, self.widen + 1)))
            wave = wave[s:e]
        if self.train and self.augment is not None:
            wave = self.augment(wave, self.rng)
        length = min(wave.shape[0], self.clip_samples)
        wave = pad_or_trim(wave, self.clip_samples, crop="random" if self.train else "center", rng=self.rng)
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), length, self.labels[i]

"""Decoded clips in memory and the torch Datasets that feed training and validation.

Every file is decoded once (through the on-disk :class:`~serkit.audio.WaveformCache`), then
epochs only crop, pad and augment arrays. Training reads one window of each clip
(:class:`ClipDataset`); validation reads each clip as the scorer scores it, every window of its
scoring units (:class:`UnitDataset`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset

from serkit.audio import SAMPLE_RATE, decode_all, pad_or_trim  # noqa: F401  (decode_all re-exported)
from serkit.rooms import ROOM_SHARE, other_speakers, room_view



@dataclass
class Augment:
    """Waveform augmentation for training: a simulated room (with ``room_prob``:
    :func:`serkit.rooms.room_view`, reverberation over the babble of ``voices`` or noise), speed
    perturbation, random gain and additive noise (the random crop of long clips is in the dataset)."""

    speed: tuple[float, float] = (0.9, 1.1)   # resampling factor (tempo and pitch together)
    speed_prob: float = 0.5
    gain_db: float = 6.0            # uniform in [-gain_db, +gain_db]
    noise_prob: float = 0.5         # chance of adding white noise
    snr_db: tuple[float, float] = (15.0, 40.0)
    room_prob: float = 0.0          # chance of hearing the clip in a simulated room first

    def __call__(self, wave: np.ndarray, rng: np.random.Generator,
                 voices: Callable[[], Sequence[np.ndarray]] | None = None) -> np.ndarray:
        """``voices``: other speakers' clips for a room's babble, asked for only when a room is drawn."""
        if self.room_prob > 0 and rng.random() < self.room_prob:
            wave = room_view(wave, rng, list(voices()) if voices is not None else [])
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


def training_augment(cfg: Any) -> Augment | None:
    """The waveform augmentation a run's settings (a :class:`~serkit.config.TrainConfig`) ask for:
    none without ``augment``; speed perturbation with ``speed_perturb``; a simulated room for
    :data:`~serkit.rooms.ROOM_SHARE` of the clips with ``rooms``."""
    if not cfg.augment:
        return None
    return Augment(speed_prob=0.5 if cfg.speed_perturb else 0.0, room_prob=ROOM_SHARE if cfg.rooms else 0.0)


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
                 spans: list[tuple[int, int]] | None = None, widen: int = 0,
                 groups: Sequence[str] | None = None):
        self.waves, self.labels, self.clip_samples = waves, labels, clip_samples
        self.train, self.augment = train, augment
        self.spans, self.widen = spans, widen
        self.groups = np.asarray(groups) if groups is not None else None
        self.rng = np.random.default_rng(seed)

    def voices(self, i: int) -> list[np.ndarray]:
        """The speech of random clips of speakers other than clip ``i``'s (``groups``), for a
        simulated room's babble; none without ``groups``."""
        if self.groups is None:
            return []
        picked = other_speakers(self.groups, i, self.rng)
        return [self.waves[j][slice(*self.spans[j])] if self.spans is not None else self.waves[j] for j in picked]

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
            wave = self.augment(wave, self.rng, lambda: self.voices(i))
        length = min(wave.shape[0], self.clip_samples)
        wave = pad_or_trim(wave, self.clip_samples, crop="random" if self.train else "center", rng=self.rng)
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), length, self.labels[i]


Units = list[tuple[int, int]]
Cut = Callable[[Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray]]


class UnitDataset(Dataset):
    """Each clip as :class:`serkit.scorer.Scorer` scores it: ``(windows, lengths, owner, units,
    label)``, the windows (k, window_samples) of its scoring ``units`` ([start, end) samples, from
    :meth:`~serkit.scorer.Scorer.units`; none for a clip without speech) with their valid lengths
    and the unit each belongs to, as ``cut`` (:meth:`~serkit.scorer.Scorer.cut`) makes them.
    Batch items with :func:`collate_units`."""

    def __init__(self, waves: list[np.ndarray], labels: list[int], units: list[Units], cut: Cut):
        self.waves, self.labels, self.units, self.cut = waves, labels, units, cut

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int):
        wave, units = self.waves[i], self.units[i]
        windows, lengths, owner = self.cut([wave[s:e] for s, e in units])
        return torch.from_numpy(windows), torch.from_numpy(lengths), torch.from_numpy(owner), units, self.labels[i]


def collate_units(items: list[tuple]) -> dict[str, Any]:
    """A batch of :class:`UnitDataset` items (each maybe with a class mask appended, as
    :func:`serkit.pool.pool_loader` appends it): every clip's windows in one tensor, ``owner`` the
    batch-wide unit of each window, ``units`` each clip's units, ``y`` the labels, ``mask`` the
    class masks or None."""
    base = [0, *np.cumsum([len(it[3]) for it in items])]
    return {"windows": torch.cat([it[0] for it in items]), "lengths": torch.cat([it[1] for it in items]),
            "owner": torch.cat([it[2] + b for it, b in zip(items, base)]),
            "units": [it[3] for it in items], "y": torch.tensor([it[4] for it in items]),
            "mask": torch.stack([it[5] for it in items]) if len(items[0]) > 5 else None}

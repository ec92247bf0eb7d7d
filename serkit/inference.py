"""Predictor: waveforms or files in, calibrated per-class probabilities out.

A clip shorter than the model's window is zero-padded (the model masks the padding); a longer
one is cut into windows of the model's length with 50 % overlap, each window is scored and the
probabilities are averaged.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serkit.audio import AudioError, check_scorable, load_audio
from serkit.bundle import load_bundle
from serkit.safety import check_finite_scores


def default_model_path() -> Path:
    """The folder of the default model shipped inside the package."""
    return Path(__file__).parent / "default_model"


@dataclass
class Prediction:
    """One file's result: the top emotion and every class's probability, or the error."""

    file: str
    emotion: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    error: str | None = None

    @property
    def confidence(self) -> float | None:
        return self.probabilities.get(self.emotion) if self.emotion else None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "emotion": self.emotion, "confidence": self.confidence,
                "probabilities": self.probabilities, "duration_s": self.duration_s, "error": self.error}


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of windows covering ``n_samples``; the last window ends at the clip's end."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


class Predictor:
    """Scores audio with a loaded bundle. Build it with :func:`serkit.load_model`."""

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], name: str = "model"):
        self.model = model.eval()
        self.config = config
        self.name = name
        self.labels: list[str] = list(config["labels"])
        self.sample_rate: int = int(config["audio"]["sample_rate"])
        self.clip_samples: int = int(round(config["audio"]["clip_seconds"] * self.sample_rate))
        self.temperature: float = float(config.get("temperature", 1.0))

    # -- windows -> logits -------------------------------------------------------------------
    @torch.inference_mode()
    def logits_windows(self, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits (n, classes) for windows (n, clip_samples) with valid ``lengths``."""
        out = []
        for i in range(0, len(windows), batch_size):
            wave = torch.from_numpy(windows[i:i + batch_size])
            lens = torch.from_numpy(lengths[i:i + batch_size])
            out.append(self.model(wave, lens).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def _windows(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hop = self.clip_samples // 2
        rows, lengths, owner = [], [], []
        for k, wave in enumerate(waves):
            for s in window_starts(len(wave), self.clip_samples, hop):
                seg = wave[s:s + self.clip_samples]
                lengths.append(len(seg))
                rows.append(np.pad(seg, (0, self.clip_samples - len(seg))))
                owner.append(k)
        return (np.stack(rows).astype(np.float32), np.asarray(lengths, dtype=np.int64),
                np.asarray(owner))

    def logits(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits per clip (n, classes): the mean over each clip's windows."""
        if not len(waves):
            return np.zeros((0, len(self.labels)), np.float32)
        windows, lengths, owner = self._windows(waves)
        logits = self.logits_windows(windows, lengths, batch_size)
        sums = np.zeros((len(waves), logits.shape[1]), np.float64)
        np.add.at(sums, owner, logits)
        return (sums / np.bincount(owner, minlength=len(waves))[:, None]).astype(np.float32)

    def predict_proba(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities (n, classes) for 1-D float32 waveforms at ``sample_rate``.

        For clips longer than the window, the windows' probabilities are averaged.
        """
        if not len(waves):
            return np.zeros((0, len(self.labels)), np.float32)
        windows, lengths, owner = self._windows(waves)
        probs = softmax(self.logits_windows(windows, lengths, batch_size) / self.temperature)
        sums = np.zeros((len(waves), probs.shape[1]), np.float64)
        np.add.at(sums, owner, probs)
        return (sums / np.bincount(owner, minlength=len(waves))[:, None]).astype(np.float32)

    # -- files ---------------------------------------------------------------------------------
    def result(self, file: str, probs: np.ndarray, duration_s: float | None) -> Prediction:
        check_finite_scores(probs, file)        # raises ScoreError (an AudioError): never a NaN answer
        best = int(np.argmax(probs))
        return Prediction(file=file, emotion=self.labels[best],
                          probabilities={l: round(float(p), 6) for l, p in zip(self.labels, probs)},
                          duration_s=duration_s)

    def predict_waveform(self, wave: np.ndarray, name: str = "<waveform>") -> Prediction:
        check_scorable(wave, self.sample_rate, name)
        return self.result(name, self.predict_proba([wave])[0], len(wave) / self.sample_rate)

    def predict_files(self, paths: Iterable[str | os.PathLike], batch_size: int = 64) -> list[Prediction]:
        """One Prediction per path, in order; a file that cannot be decoded gets ``error`` set."""
        paths = [str(p) for p in paths]
        results: list[Prediction | None] = [None] * len(paths)
        for start in range(0, len(paths), batch_size):
            chunk = range(start, min(start + batch_size, len(paths)))
            waves, ok = [], []
            for i in chunk:
                try:
                    waves.append(load_audio(paths[i], self.sample_rate))
                    check_scorable(waves[-1], self.sample_rate, paths[i])
                    ok.append(i)
                except AudioError as exc:
                    del waves[len(ok):]
                    results[i] = Prediction(file=paths[i], error=str(exc))
            for i, wave, probs in zip(ok, waves, self.predict_proba(waves, batch_size)):
                try:
                    results[i] = self.result(paths[i], probs, len(wave) / self.sample_rate)
                except AudioError as exc:     # non-finite scores
                    results[i] = Prediction(file=paths[i], error=str(exc))
        return results  # type: ignore[return-value]

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        return self.predict_files([path])[0]

    def predict_timeline(self, source: str | os.PathLike | np.ndarray, **options: Any):
        """Emotions over time of a long recording (a path, or a 1-D waveform at ``sample_rate``),
        streamed in bounded memory: speech segments, each with an emotion and probabilities.
        Returns a :class:`serkit.timeline.Timeline`; ``options`` are those of
        :func:`serkit.timeline.predict_timeline` (``vad``, ``max_segment_s``, ``progress``, …)."""
        from serkit.timeline import predict_timeline
        return predict_timeline(self, source, **options)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def load_model(path: str | os.PathLike | None = None, runtime: str = "auto") -> Predictor:
    """A Predictor for the bundle at ``path``, or the shipped default model when ``path`` is None.

    ``runtime``: ``"torch"`` (a bundle), ``"onnx"`` (a folder from ``serkit export --onnx``, or
    one of its ``.onnx`` files) or ``"auto"`` (ONNX when ``path`` is such an export).
    """
    folder = Path(path) if path is not None else default_model_path()
    if runtime not in ("auto", "torch", "onnx"):
        raise ValueError(f"unknown runtime {runtime!r}; choose auto, torch or onnx")
    if runtime == "onnx" or (runtime == "auto" and folder.suffix == ".onnx") or (
            runtime == "auto" and not (folder / "model.safetensors").is_file() and (folder / "model.onnx").is_file()):
        from serkit.onnx_runtime import load_onnx_model
        return load_onnx_model(folder)
    model, config = load_bundle(folder)
    return Predictor(for_inference(model, config["model_type"]), config, name=folder.name)


def for_inference(model: torch.nn.Module, model_type: str) -> torch.nn.Module:
    """The model in eval mode, prepared for inference only: a CNN-LSTM gets its BatchNorm folded
    into its convolutions and channels-last (NHWC) memory, faster on CPU; it cannot train after."""
    model = model.eval()
    if model_type == "cnn_lstm":
        model = model.fuse_batchnorm().to(memory_format=torch.channels_last)
    return model

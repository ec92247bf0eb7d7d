"""Log-mel spectrograms in pure torch, so a model's first layer is its front-end.

Matches ``librosa.feature.melspectrogram(..., center=True, pad_mode="constant")`` followed by
``librosa.power_to_db(ref=1.0, amin=1e-10, top_db=80)`` (checked in the tests). The mel
filterbank (Slaney scale and area normalisation, librosa's default) is computed once and kept
as a buffer, so it travels with the weights and cannot drift.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from serkit.mel import mel_filterbank  # noqa: F401  (numpy, torch-free: re-exported for the front-ends)
from serkit.models.configs import HOP_LENGTH, N_FFT, N_MELS, WIN_LENGTH  # noqa: E402,F401  (defined with the config)


def exporting() -> bool:
    """True while a model is being traced or exported to ONNX (either exporter)."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def dft_basis(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Conv1d weights (2 * (n_fft // 2 + 1), 1, n_fft): the cosine and minus-sine rows of the
    real DFT, times ``window`` centred in ``n_fft`` samples as ``torch.stft`` places it."""
    win = torch.zeros(n_fft, dtype=torch.float64)
    left = (n_fft - len(window)) // 2
    win[left:left + len(window)] = window.double()
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * torch.arange(n_fft, dtype=torch.float64)[None, :] / n_fft
    return (torch.cat([torch.cos(angle), -torch.sin(angle)]) * win).float()[:, None, :]


def conv_stft_power(wave: torch.Tensor, basis: torch.Tensor, hop: int, pad_mode: str) -> torch.Tensor:
    """``|torch.stft(wave, center=True, pad_mode=pad_mode)|**2`` (batch, freqs, frames) as one
    strided convolution with :func:`dft_basis`: real-valued, so both ONNX exporters write it, and
    onnxruntime runs it 2x (512-point) to 10x (400-point, where its STFT has no fast path)
    faster than its STFT operator."""
    n_fft = basis.shape[-1]
    spec = F.conv1d(F.pad(wave[:, None], (n_fft // 2, n_fft // 2), mode=pad_mode), basis, stride=hop)
    real, imag = spec.chunk(2, dim=1)                              # (batch, freqs, frames) each
    return real * real + imag * imag


class LogMel(nn.Module):
    """Waveforms (batch, samples) -> log-mel in dB (batch, n_mels, frames).

    ``normalize="utterance"`` then standardises each utterance over its valid frames (mean 0,
    std 1 over all its mel bins and frames); ``"band"`` standardises each mel band of each
    utterance separately over its valid frames (cepstral mean and variance normalisation, which
    removes a speaker's or channel's spectral tilt); ``"none"`` leaves decibels.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = N_FFT, win_length: int = WIN_LENGTH,
                 hop_length: int = HOP_LENGTH, n_mels: int = N_MELS, top_db: float | None = 80.0,
                 normalize: str = "utterance"):
        super().__init__()
        if normalize not in ("utterance", "band", "none"):
            raise ValueError(f"unknown normalize {normalize!r}; choose utterance, band or none")
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.top_db, self.normalize = top_db, normalize
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)),
                             persistent=False)
        self.register_buffer("dft_basis", dft_basis(self.window, n_fft), persistent=False)   # for ONNX

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of frames that carry signal for waveforms of ``lengths`` samples."""
        return lengths // self.hop_length + 1

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        if exporting():   # the same power spectrum as a convolution (see conv_stft_power)
            power = conv_stft_power(wave, self.dft_basis, self.hop_length, "constant")
        else:
            spec = torch.stft(wave, self.n_fft, self.hop_length, self.win_length, self.window,
                              center=True, pad_mode="constant", return_complex=True)
            power = spec.real.square() + spec.imag.square()    # (batch, freqs, frames)
        return torch.matmul(self.mel_fb, power)                # (batch, mels, frames)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mel = self.power_mel(wave)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        if self.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        if self.normalize == "none":
            return db
        n_frames = db.shape[-1]
        if lengths is None:
            mask = torch.ones(db.shape[0], 1, n_frames, dtype=db.dtype, device=db.device)
        else:
            valid = self.frames(lengths).clamp(max=n_frames)
            mask = (torch.arange(n_frames, device=db.device)[None, :] < valid[:, None]).to(db.dtype)[:, None, :]
        dims = (-1,) if self.normalize == "band" else (-2, -1)
        count = mask.sum(dim=-1, keepdim=True) * (1 if self.normalize == "band" else db.shape[-2])
        mean = (db * mask).sum(dim=dims, keepdim=True) / count
        var = ((db - mean).square() * mask).sum(dim=dims, keepdim=True) / count
        return (db - mean) / (var.sqrt() + 1e-5) * mask        # padding frames are exactly 0

"""Front-ends of pretrained encoders: Whisper's log-mel in torch on a window of our choosing, and
a GroupNorm masked to each clip's valid frames (wav2vec2-style encoders), for
:mod:`serkit.models.pretrained`.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch
from torch import nn

from serkit.features import conv_stft_power, dft_basis, exporting


class WhisperLogMel(nn.Module):
    """Waveforms (batch, samples) -> Whisper log-mel (batch, n_mels, samples // hop).

    The computation of ``WhisperFeatureExtractor`` (its torch path: periodic Hann window,
    centred reflect-padded STFT, the last frame dropped, its Slaney mel filterbank, log10,
    clamp to 8 below each clip's maximum, then (x + 4) / 4), on a window of our choosing
    instead of 30 s. The filterbank is taken from the feature extractor itself.
    """

    def __init__(self, feature_config: dict[str, Any]):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        keys = ("feature_size", "sampling_rate", "hop_length", "n_fft")
        fe = WhisperFeatureExtractor(**{k: feature_config[k] for k in keys if k in feature_config})
        self.n_fft, self.hop_length = fe.n_fft, fe.hop_length
        self.register_buffer("window", torch.hann_window(fe.n_fft), persistent=False)
        self.register_buffer("mel_filters", torch.from_numpy(fe.mel_filters.T.copy()).float(),
                             persistent=False)  # (mels, freqs)
        self.register_buffer("dft_basis", dft_basis(self.window, fe.n_fft), persistent=False)   # for ONNX

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if exporting():   # the same power spectrum as a convolution (serkit.features.conv_stft_power)
            power = conv_stft_power(wave, self.dft_basis, self.hop_length, "reflect")[..., :-1]
        else:
            stft = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, return_complex=True)
            power = (stft[..., :-1].abs() ** 2).contiguous()      # (batch, freqs, frames)
        log_spec = (self.mel_filters @ power).clamp(min=1e-10).log10()   # (batch, mels, frames)
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0


_VALID_FRAMES = threading.local()   # per thread: a server's request threads share one model


@contextlib.contextmanager
def valid_frames(frames: torch.Tensor):
    """Within the block (and this thread), every :class:`MaskedGroupNorm` normalises row ``i``
    over its first ``frames[i]`` frames only."""
    previous = getattr(_VALID_FRAMES, "frames", None)
    _VALID_FRAMES.frames = frames
    try:
        yield
    finally:
        _VALID_FRAMES.frames = previous


class MaskedGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` over (batch, channels, frames) whose statistics cover each row's valid
    frames only (set with :func:`valid_frames`), so that zero padding after a clip does not
    change its output; outside :func:`valid_frames` it is an ordinary GroupNorm. The weights and
    their names are GroupNorm's, so checkpoints load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = getattr(_VALID_FRAMES, "frames", None)
        if frames is None:
            return super().forward(x)
        b, c, t = x.shape
        g = x.reshape(b, self.num_groups, c // self.num_groups, t)
        mask = (torch.arange(t, device=x.device)[None, :] < frames.clamp(min=1)[:, None])
        mask = mask[:, None, None, :].to(x.dtype)                                   # (batch, 1, 1, frames)
        count = mask.sum(dim=(2, 3), keepdim=True) * (c // self.num_groups)
        mean = (g * mask).sum(dim=(2, 3), keepdim=True) / count
        var = (((g - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True) / count
        y = ((g - mean) / torch.sqrt(var + self.eps)).reshape(b, c, t)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


def _mask_group_norm(encoder: nn.Module) -> MaskedGroupNorm | None:
    """Replace the GroupNorm of a wav2vec2-style feature encoder's first convolution (the one
    normalisation over time in those encoders) by a :class:`MaskedGroupNorm`; returns it, or
    None when the encoder normalises per frame (``feat_extract_norm == "layer"``)."""
    first = encoder.feature_extractor.conv_layers[0]
    norm = getattr(first, "layer_norm", None)
    if not isinstance(norm, nn.GroupNorm):
        return None
    masked = MaskedGroupNorm(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine)
    masked.load_state_dict(norm.state_dict())
    masked.requires_grad_(any(p.requires_grad for p in norm.parameters()))
    first.layer_norm = masked
    return masked

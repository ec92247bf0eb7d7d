"""A compact CNN-LSTM over log-mel spectrograms, reading top to bottom.

waveform -> LogMel (+ SpecAugment while training) -> 3 conv blocks -> BiLSTM over time ->
pooling over valid frames (attention or mean) -> linear head.
"""
from __future__ import annotations


import torch
from torch import nn

from serkit.features import LogMel
from serkit.models.configs import CNNLSTMConfig  # noqa: F401  (re-exported)


def spec_augment(x: torch.Tensor, n_masks: int, width: int, dim: int) -> torch.Tensor:
    """Zero ``n_masks`` random bands of up to ``width`` bins along ``dim`` of (batch, mels, frames)."""
    size = x.shape[dim]
    if n_masks == 0 or width == 0 or size <= width:
        return x
    batch = x.shape[0]
    w = torch.randint(0, width + 1, (batch, n_masks, 1), device=x.device)
    start = (torch.rand(batch, n_masks, 1, device=x.device) * (size - w)).long()
    pos = torch.arange(size, device=x.device)[None, None, :]
    masked = ((pos >= start) & (pos < start + w)).any(dim=1)     # (batch, size)
    shape = [batch, 1, 1]
    shape[dim] = size
    return x.masked_fill(masked.view(shape), 0.0)


class CNNLSTM(nn.Module):
    def __init__(self, config: CNNLSTMConfig):
        super().__init__()
        if config.pooling not in ("attention", "mean"):
            raise ValueError(f"unknown pooling {config.pooling!r}; choose attention or mean")
        if config.downsample not in ("pool", "stride"):
            raise ValueError(f"unknown downsample {config.downsample!r}; choose pool or stride")
        self.config = c = config
        self.frontend = LogMel(**self.frontend_settings)
        # Every block halves time and frequency: with a strided convolution, or ("pool") the
        # first so and the others with max-pooling after a full-resolution convolution.
        blocks, cin = [], 1
        for i, cout in enumerate(c.channels):
            strided = i == 0 or c.downsample == "stride"
            blocks += [nn.Conv2d(cin, cout, 3, stride=2 if strided else 1, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if not strided:
                blocks.append(nn.MaxPool2d(2))
            cin = cout
        self.conv = nn.Sequential(*blocks)
        lstm_in = cin * self.downsampled(c.n_mels)
        self.lstm = nn.LSTM(lstm_in, c.lstm_hidden, batch_first=True, bidirectional=True)
        self.attention = nn.Linear(2 * c.lstm_hidden, 1) if c.pooling == "attention" else None
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(2 * c.lstm_hidden, c.n_classes)

    @property
    def frontend_settings(self) -> dict:
        """What makes its log-mel (:class:`serkit.features.LogMel`'s arguments): CNN-LSTMs that
        agree on it hear the same features (an ensemble computes them once for all)."""
        c = self.config
        return dict(sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
                    n_mels=c.n_mels, normalize=c.normalize)

    def downsampled(self, n):
        """Size after the conv blocks of an axis of size ``n`` (an int or a tensor of frame
        counts): a strided 3x3 convolution (padding 1) keeps ceil(n / 2), a 2x2 max-pool floor(n / 2)."""
        for i in range(len(self.config.channels)):
            n = (n + 1) // 2 if i == 0 or self.config.downsample == "stride" else n // 2
        return n

    def fuse_batchnorm(self) -> CNNLSTM:
        """Fold every BatchNorm into the convolution before it, for inference (same outputs to
        float rounding, one pass over memory fewer per block). In place; returns the model in
        eval mode. A fused model is for inference only: it no longer has the BatchNorm layers
        that training (and a bundle's weights) expect."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.eval()
        layers, fused = list(self.conv), []
        for layer in layers:
            if isinstance(layer, nn.BatchNorm2d) and fused and isinstance(fused[-1], nn.Conv2d):
                fused[-1] = fuse_conv_bn_eval(fused[-1], layer)
            else:
                fused.append(layer)
        self.conv = nn.Sequential(*fused)
        return self

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.frontend(wave, lengths), lengths)

    def classify(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from the front-end's log-mel ``x`` (batch, mels, frames) of waves of ``lengths``
        samples (an ensemble of models with one front-end computes it once)."""
        c = self.config
        if self.training:
            x = spec_augment(x, c.freq_masks, c.freq_mask_width, dim=1)
            x = spec_augment(x, c.time_masks, c.time_mask_width, dim=2)
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)   # faster convs on CPU
        x = self.conv(x)                                          # (batch, channels, mels', frames')
        b, ch, m, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, ch * m)           # (batch, frames', features)
        x, _ = self.lstm(x)                                       # (batch, frames', 2*hidden)
        if lengths is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        else:
            valid = self.downsampled(self.frontend.frames(lengths)).clamp(1, t)
            mask = torch.arange(t, device=x.device)[None, :] < valid[:, None]   # (batch, frames')
        if self.attention is not None:
            scores = self.attention(x).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=1)                        # (batch, frames')
        else:
            weights = mask.float() / mask.sum(dim=1, keepdim=True)
        pooled = torch.bmm(weights.unsqueeze(1), x).squeeze(1)    # (batch, 2*hidden)
        return self.head(self.dropout(pooled))                    # (batch, classes)

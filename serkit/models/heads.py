"""The trainable head on a pretrained encoder's pooled layers, for :mod:`serkit.models.pretrained`."""
from __future__ import annotations

import torch
from torch import nn

from serkit.models.configs import PretrainedConfig


class PooledHead(nn.Module):
    """Everything that trains on top of a frozen encoder: layer weights, attention, MLP.

    ``forward(pooled)`` takes per-layer pooled features (batch, layers, features) as
    :meth:`PretrainedSER.pooled_layers` (or the embedding cache) gives them. The ``lengths``
    argument is ignored; it lets the head stand in for a waveform model in training.
    """

    def __init__(self, n_layers: int, dim: int, config: PretrainedConfig):
        super().__init__()
        c = config
        if not -n_layers <= c.layer < n_layers:
            raise ValueError(f"layer {c.layer} does not exist: the backbone has hidden layers 0..{n_layers - 1}")
        self.layer = c.layer % n_layers
        self.concat = c.concat_layers
        self.layer_logits = nn.Parameter(torch.zeros(n_layers)) if c.layer_weights and not self.concat else None
        frame_dim = n_layers * dim if self.concat else dim
        self.attention = nn.Linear(frame_dim, 1) if c.pooling == "attention" else None
        in_dim = 2 * frame_dim if c.pooling == "stats" else frame_dim
        if c.head_hidden > 0:
            self.mlp = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(in_dim, c.head_hidden), nn.ReLU(),
                                     nn.Dropout(c.dropout), nn.Linear(c.head_hidden, c.n_classes))
        else:
            self.mlp = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(in_dim, c.n_classes))

    def layer_weights(self) -> torch.Tensor | None:
        return None if self.layer_logits is None else self.layer_logits.softmax(0)

    def combine(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, layers, ..., dim) -> (batch, ..., features): the layers concatenated, their
        weighted sum, or the chosen layer."""
        if self.concat:
            return x.movedim(1, -2).flatten(-2)                # (batch, ..., layers * dim)
        if self.layer_logits is None:
            return x[:, self.layer]
        w = self.layer_logits.softmax(0).view(1, -1, *([1] * (x.dim() - 2)))
        return (w * x).sum(dim=1)

    def attend(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention pooling of frames (batch, frames, dim) over the valid ``mask`` -> logits."""
        scores = self.attention(frames).squeeze(-1).masked_fill(~mask, float("-inf"))   # (batch, frames)
        pooled = torch.bmm(scores.softmax(dim=1).unsqueeze(1), frames).squeeze(1)         # (batch, dim)
        return self.mlp(pooled)

    def forward(self, pooled: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(self.combine(pooled))                                            # (batch, classes)

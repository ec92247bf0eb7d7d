"""Several models of one split answering together (``serkit ensemble``).

    waveform (batch, samples), lengths
      -> each member: logits / its temperature -> log-softmax
      -> log of the mean of the members' probabilities   (batch, classes)

The output stands where a model's logits stand: the scorer averages it over a segment's
windows and divides it by the ensemble's own temperature (fitted on the members' shared
validation speakers), so an ensemble is scored, exported to ONNX and served as one model.
Members are built by :func:`serkit.bundle.build_model` (from the configs their bundles
recorded) and handed in; an ensemble never trains.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from serkit.models.cnn_lstm import CNNLSTM
from serkit.models.configs import EnsembleConfig


class Ensemble(nn.Module):
    def __init__(self, config: EnsembleConfig, members: list[nn.Module]):
        super().__init__()
        if len(members) != len(config.members):
            raise ValueError(f"{len(members)} models for an ensemble of {len(config.members)}")
        self.config = config
        self.members = nn.ModuleList(members)
        self.temperatures = [float(m.get("temperature", 1.0)) for m in config.members]
        # CNN-LSTMs that hear through the same log-mel: the ensemble computes it once for all
        self.shared_frontend = (all(isinstance(m, CNNLSTM) for m in members)
                                and all(m.frontend_settings == members[0].frontend_settings for m in members))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.shared_frontend:
            x = self.members[0].frontend(wave, lengths)
            logits = [m.classify(x, lengths) for m in self.members]
        else:
            logits = [m(wave, lengths) for m in self.members]
        logp = torch.stack([torch.log_softmax(z / t, dim=-1) for z, t in zip(logits, self.temperatures)])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))    # (batch, classes)

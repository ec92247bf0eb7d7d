"""What the views share, built once per app: the loaded models and the limits."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from flask import current_app

from serkit.inference import Predictor
from serkit.web.uploads import ApiError, Limits


@dataclass
class ServedModel:
    name: str
    source: str
    predictor: Predictor

    @property
    def can_tell_voices(self) -> bool:
        """It can answer a recording's voices told apart (``speakers=voice``): it adapts, and SciPy is installed."""
        return self.predictor.can_adapt and can_tell_voices()

    def info(self) -> dict[str, Any]:
        c = self.predictor.config
        return {
            "name": self.name,
            "model_type": c.get("model_type"),
            "labels": self.predictor.labels,
            "audio": {"sample_rate": self.predictor.sample_rate,
                      "clip_seconds": self.predictor.clip_samples / self.predictor.sample_rate},
            "temperature": self.predictor.temperature,
            "can_adapt": self.predictor.can_adapt,
            "can_tell_voices": self.can_tell_voices,
            "serkit_version": c.get("serkit_version"),
            "metrics": c.get("metrics", {}),
        }


@dataclass
class Service:
    """What the views need, built once per app: the loaded models and the limits."""

    models: dict[str, ServedModel]
    default: str
    limits: Limits

    def model(self, name: str | None) -> ServedModel:
        name = name or self.default
        if name not in self.models:
            raise ApiError(404, "unknown_model", f"No model called {name!r}; this server has "
                           f"{', '.join(sorted(self.models))}.", models=sorted(self.models))
        return self.models[name]


@functools.lru_cache(maxsize=1)
def can_tell_voices() -> bool:
    """Whether this server can tell voices apart (SciPy, for :mod:`serkit.voices`, is installed)."""
    from serkit.voices import clustering
    try:
        clustering()
    except ValueError:
        return False
    return True


def service() -> Service:
    return current_app.extensions["serkit"]

"""Frozen speech encoders that ship inside serkit as ONNX graphs, and how bundles name them.

An encoder-head bundle (``model_type: "encoder_head"``) names its encoder in
``model_config["backbone"]`` as either

- ``serkit:NAME``: a graph shipped in this folder (``NAME/encoder.onnx`` with ``backbone.json``
  saying where it came from). Its bytes never change when a head is retrained, so the
  repository and the package hold each encoder once; or
- a plain file name (``encoder.onnx``): a graph inside the bundle folder itself.

Never an absolute path or a path outside the bundle: a bundle copied to another machine loads
the same encoder, or says exactly which one it lacks.

Each graph takes ``wave`` float32 (batch, samples) at 16 kHz and ``lengths`` int64 (batch,) and
gives ``mean`` and ``std`` float32 (batch, layers, dim): every kept hidden layer's statistics
over the clip's valid frames (see :func:`serkit.models.encoder_head.export_stats_encoder`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PREFIX = "serkit:"
ENCODER_FILE = "encoder.onnx"
INFO_FILE = "backbone.json"


class MissingBackbone(ValueError):
    """A bundle's encoder is not here; the message names it and what to do."""


def shipped() -> list[str]:
    """Names of the encoders shipped in this package."""
    return sorted(PREFIX + p.name for p in HERE.iterdir() if (p / ENCODER_FILE).is_file())


def encoder_path(spec: str, bundle: Path) -> Path:
    """The ONNX file of encoder ``spec`` for the bundle at ``bundle``."""
    if not isinstance(spec, str) or not spec:
        raise MissingBackbone(f"{bundle}: the bundle names no encoder (model_config.backbone)")
    if spec.startswith(PREFIX):
        name = spec[len(PREFIX):]
        path = HERE / name / ENCODER_FILE
        if "/" in name or "\\" in name or name in ("", ".", "..") or not path.is_file():
            raise MissingBackbone(f"{bundle}: needs the encoder {spec!r}, which this serkit does not ship "
                                  f"(it ships {', '.join(shipped()) or 'none'}); upgrade serkit")
        return path
    if Path(spec).name != spec or spec in (".", ".."):
        raise MissingBackbone(f"{bundle}: encoder {spec!r} must be 'serkit:NAME' or a file inside the bundle")
    path = bundle / spec
    if not path.is_file():
        raise MissingBackbone(f"{bundle}: missing its encoder file {spec}")
    return path


def backbone_info(spec: str) -> dict[str, Any]:
    """What ``backbone.json`` says about a shipped encoder ({} for others)."""
    if not spec.startswith(PREFIX):
        return {}
    info = HERE / spec[len(PREFIX):] / INFO_FILE
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}

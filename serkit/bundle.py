"""A model bundle: a folder with ``model.safetensors`` and ``config.json``. Never unpickles.

``config.json`` holds everything needed to rebuild and use the model::

    {"format": "serkit-bundle", "format_version": 1, "serkit_version": "...",
     "model_type": "cnn_lstm", "model_config": {...}, "labels": [...],
     "audio": {"sample_rate": 16000, "clip_seconds": 3.0}, "temperature": 1.3,
     "training": {...}, "metrics": {...}}

Bundles are written to a temporary folder and renamed into place, so a killed run never leaves
a half-written bundle behind.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serkit.errors import BundleError
from serkit.models.configs import CNNLSTMConfig, EncoderHeadConfig, EnsembleConfig, PretrainedConfig
from serkit.safety import BUNDLE_FORMAT, CONFIG, atomic_folder, to_json
from serkit.version import __version__

if TYPE_CHECKING:   # torch is needed only to build, save or load a PyTorch model, not to read a config
    from torch import nn

FORMAT = BUNDLE_FORMAT
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
ENCODER = "encoder.onnx"    # serkit.backbones.ENCODER_FILE: an encoder-head bundle's own encoder
#: The files of a bundle: what serkit replaces in a bundle folder (anything else there stays).
BUNDLE_FILES = (WEIGHTS, CONFIG, ENCODER)


#: model_type -> its config dataclass (torch-free: a config is read and checked without PyTorch).
CONFIG_CLASSES: dict[str, type] = {"cnn_lstm": CNNLSTMConfig, "pretrained": PretrainedConfig,
                                   "encoder_head": EncoderHeadConfig, "ensemble": EnsembleConfig}


def _registry() -> dict[str, tuple[type, type]]:
    """model_type -> (config dataclass, module class). Imported lazily to keep start-up light."""
    from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
    from serkit.models.encoder_head import EncoderHead, EncoderHeadConfig
    from serkit.models.ensemble import Ensemble, EnsembleConfig
    registry: dict[str, tuple[type, type]] = {"cnn_lstm": (CNNLSTMConfig, CNNLSTM),
                                              "encoder_head": (EncoderHeadConfig, EncoderHead),
                                              "ensemble": (EnsembleConfig, Ensemble)}
    try:
        from serkit.models.pretrained import PretrainedConfig, PretrainedSER
        registry["pretrained"] = (PretrainedConfig, PretrainedSER)
    except ImportError:
        pass
    return registry


def model_type_of(model: nn.Module) -> str:
    for name, (_, cls) in _registry().items():
        if isinstance(model, cls):
            return name
    raise BundleError(f"no bundle model type for {type(model).__name__}")


def build_model(model_type: str, model_config: dict[str, Any], source: str | os.PathLike | None = None) -> nn.Module:
    """The model of a config (checked first, see :mod:`serkit.bundle_schema`).

    ``source`` names the bundle the config comes from: such a config is not the user's own, so
    it may not make the model reach the network or read a backbone folder outside the places a
    bundle may name (see :func:`serkit.models.pretrained.resolve_backbone`).
    """
    registry = _registry()
    if model_type not in registry:
        raise BundleError(f"unknown model type {model_type!r}; this serkit knows {', '.join(registry)}")
    config_cls, model_cls = registry[model_type]
    known = {f.name for f in fields(config_cls)}
    # Settings added after a bundle was written take the value that bundle was trained with
    # (the config class's LEGACY), not today's default.
    stored = {**getattr(config_cls, "LEGACY", {}), **model_config}
    untrusted = {"trusted": False, "bundle": Path(source)} if source is not None and model_type == "pretrained" else {}
    try:
        config = config_cls(**{k: v for k, v in stored.items() if k in known})
        if model_type == "ensemble":   # its members are models of their own kinds, built as any bundle's
            return model_cls(config, [build_model(m["model_type"], m["model_config"], source) for m in config.members])
        return model_cls(config, **untrusted)
    except BundleError:
        raise
    except (ValueError, TypeError) as exc:   # a setting the schema passes but the model refuses
        if type(exc) not in (ValueError, TypeError):
            raise                            # a specific error (BackboneError) already says where
        where = str(source or "model_config")
        raise BundleError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def save_bundle(folder: str | os.PathLike, model: nn.Module, labels: list[str],
                audio: dict[str, Any], temperature: float = 1.0, files: dict[str, Path] | None = None,
                *, force: bool = False, inputs: Iterable[str | os.PathLike] = (), **extra: Any) -> Path:
    """Write ``model`` and its metadata to ``folder`` atomically; returns the folder.

    ``extra`` keys (``training``, ``metrics``, …) are stored in config.json as they are;
    ``files`` (name -> path) are copied into the bundle (e.g. an encoder-head model's encoder).
    A model may leave tensors out of the bundle (e.g. a frozen pretrained encoder referenced by
    name) through a ``bundle_state_dict()`` method. ``folder`` must be new, empty or a bundle;
    ``force`` lets serkit write its files into a folder holding others (they are kept).
    """
    folder = Path(folder)
    model_config = asdict(model.config)
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "serkit_version": __version__,
        "model_type": model_type_of(model), "model_config": model_config, "labels": list(labels),
        "audio": audio, "temperature": float(temperature), **extra,
    }
    check_outputs(folder, config)
    text = to_json(config, indent=2, default=str) + "\n"
    from safetensors.torch import save_file

    state = model.bundle_state_dict() if hasattr(model, "bundle_state_dict") else model.state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    owned = (*BUNDLE_FILES, *(files or {}))
    with atomic_folder(folder, "bundle", owned, force=force, inputs=inputs) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        for name, src in (files or {}).items():
            shutil.copyfile(src, tmp / name)
        (tmp / CONFIG).write_text(text, encoding="utf-8")
    return folder


def check_outputs(folder: str | os.PathLike, config: dict[str, Any]) -> None:
    """A bundle's labels must name the model's outputs one to one (``model_config.n_classes``),
    and its temperature must be a finite number above 0 (0 divides by zero, a negative one
    inverts every answer). Raises :class:`BundleError` naming the folder."""
    labels = config.get("labels")
    if (not isinstance(labels, list) or not labels or not all(isinstance(l, str) and l for l in labels)
            or len(set(labels)) != len(labels)):
        raise BundleError(f"{folder}: labels must be a list of distinct names, not {labels!r}")
    n_classes = (config.get("model_config") or {}).get("n_classes")
    if n_classes is not None and n_classes != len(labels):
        raise BundleError(f"{folder}: {len(labels)} labels for a model with {n_classes} outputs; "
                          "the labels must name every output")
    t = config.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise BundleError(f"{folder}: temperature {t!r} is not a finite number above 0")


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The bundle's config.json, checked for format, version and :mod:`serkit.bundle_schema`."""
    from serkit.bundle_schema import MAX_CONFIG_BYTES, validate_config

    folder = Path(folder)
    path = folder / CONFIG
    if (folder / "bundle" / CONFIG).is_file():      # a training run's folder: its model is inside
        raise BundleError(f"{folder}: a training run's folder; its model is {folder / 'bundle'}")
    if not path.is_file():
        raise BundleError(f"{folder}: " + (f"not a serkit bundle (no {CONFIG})" if folder.is_dir() else
                          "no such folder") + "; give a bundle folder (predict, evaluate, info and serve "
                          "also take a shipped model: default, fast)")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise BundleError(f"{path}: {size / 1e6:.1f} MB is far too large for a bundle's config "
                          f"(at most {MAX_CONFIG_BYTES // 1024 // 1024} MiB)")
    try:
        config = json.loads(path.read_text(encoding="utf-8-sig"))   # an editor's BOM is fine
    except RecursionError:
        raise BundleError(f"{path}: nested too deeply to be a bundle's config") from None
    except (ValueError, OSError) as exc:   # JSONDecodeError, UnicodeDecodeError, huge integers
        raise BundleError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise BundleError(f"{path}: not a serkit bundle (a JSON {type(config).__name__}, not an object)")
    if config.get("format") != FORMAT:
        raise BundleError(f"{folder}: not a serkit bundle (format {config.get('format')!r})")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{path}: format_version {version!r} is not a bundle format version")
    if version > FORMAT_VERSION:
        raise BundleError(f"{folder}: bundle format {version} is newer than this serkit reads "
                          f"({FORMAT_VERSION}); upgrade serkit")
    validate_config(config, path, CONFIG_CLASSES)
    check_outputs(folder, config)
    return config


def load_bundle(folder: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a bundle (in eval mode) and return it with its config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_config(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise BundleError(f"{folder}: missing {WEIGHTS}")
    try:
        state = load_file(str(weights))   # checks the header against the file's length
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{weights}: not a readable safetensors file ({exc}); "
                          "is it truncated or replaced?") from None
    model = build_model(config["model_type"], config["model_config"], source=folder)
    if hasattr(model, "load_bundle_state_dict"):
        model.load_bundle_state_dict(state)
    else:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even with strict=False
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            first = next((line for line in lines if line.startswith("size mismatch")), lines[0] if lines else "")
            more = f"; {len(lines) - 2} more" if len(lines) > 2 else ""
            raise BundleError(f"{folder}: weights do not fit the model ({first}{more})") from None
        if missing or unexpected:
            raise BundleError(f"{folder}: weights do not fit the model "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), config



def for_inference(model: nn.Module, model_type: str) -> nn.Module:
    """The model in eval mode, prepared for inference only: a CNN-LSTM (alone or in an ensemble)
    gets its BatchNorm folded into its convolutions and channels-last (NHWC) memory, faster on
    CPU; it cannot train after."""
    import torch

    model = model.eval()
    if model_type == "cnn_lstm":
        model = model.fuse_batchnorm().to(memory_format=torch.channels_last)
    elif model_type == "ensemble":
        for i, (member, info) in enumerate(zip(model.members, model.config.members)):
            model.members[i] = for_inference(member, info["model_type"])
    return model

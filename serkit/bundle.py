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
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from serkit import __version__

FORMAT = "serkit-bundle"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class BundleError(ValueError):
    """A folder that is not a usable serkit bundle; the message names the folder and the problem."""


def _registry() -> dict[str, tuple[type, type]]:
    """model_type -> (config dataclass, module class). Imported lazily to keep start-up light."""
    from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
    registry: dict[str, tuple[type, type]] = {"cnn_lstm": (CNNLSTMConfig, CNNLSTM)}
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
        return model_cls(config_cls(**{k: v for k, v in stored.items() if k in known}), **untrusted)
    except BundleError:
        raise
    except (ValueError, TypeError) as exc:   # a setting the schema passes but the model refuses
        if type(exc) not in (ValueError, TypeError):
            raise                            # a specific error (BackboneError) already says where
        where = str(source or "model_config")
        raise BundleError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def save_bundle(folder: str | os.PathLike, model: nn.Module, labels: list[str],
                audio: dict[str, Any], temperature: float = 1.0, **extra: Any) -> Path:
    """Write ``model`` and its metadata to ``folder`` atomically; returns the folder.

    ``extra`` keys (``training``, ``metrics``, …) are stored in config.json as they are.
    A model may leave tensors out of the bundle (e.g. a frozen pretrained encoder referenced by
    name) through a ``bundle_state_dict()`` method.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    model_config = asdict(model.config)
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "serkit_version": __version__,
        "model_type": model_type_of(model), "model_config": model_config, "labels": list(labels),
        "audio": audio, "temperature": float(temperature), **extra,
    }
    state = model.bundle_state_dict() if hasattr(model, "bundle_state_dict") else model.state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_folder(folder) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
    return folder


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder`` to fill; when the block succeeds it replaces
    ``folder`` whole (a rename), and when it fails it is removed and ``folder`` is untouched."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)     # mkdtemp's 0700 would hide the folder from other users
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The bundle's config.json, checked for format, version and :mod:`serkit.bundle_schema`."""
    from serkit.bundle_schema import MAX_CONFIG_BYTES, validate_config

    folder = Path(folder)
    path = folder / CONFIG
    if not path.is_file():
        raise BundleError(f"{folder}: not a serkit bundle (no {CONFIG})")
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
    return validate_config(config, path, {name: cls for name, (cls, _) in _registry().items()})


def load_bundle(folder: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a bundle (in eval mode) and return it with its config."""
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


"""Hugging Face backbones for :mod:`serkit.models.pretrained`: where a backbone's files are (a
folder, or a hub snapshot in the local cache, fetched only when the user asked for a hub name),
which folders a bundle may name, the checksum of its weights, and loading the encoder module.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from serkit.models.configs import BackboneError


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' load reports and progress bars (serkit checks the loading info itself)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an offline machine fails in a second, not after
    retries. Behind a proxy the check cannot be made directly; the download then decides."""
    from huggingface_hub import constants

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


#: Folders (os.pathsep-separated) where a bundle's backbone folder may lie, besides the Hugging
#: Face cache and the bundle's own folder.
BACKBONE_DIRS_ENV = "SERKIT_BACKBONE_DIRS"


def backbone_places(bundle: Path | None = None) -> list[Path]:
    """Where a backbone folder named by a bundle (not by the user) may lie: the Hugging Face hub
    cache, the bundle's own folder and the folders in ``$SERKIT_BACKBONE_DIRS``."""
    from huggingface_hub import constants

    places = [Path(constants.HF_HUB_CACHE)] + ([bundle] if bundle is not None else [])
    places += [Path(p).expanduser() for p in os.environ.get(BACKBONE_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    return [p.resolve() for p in places]


def resolve_backbone(spec: str, revision: str | None = None, trusted: bool = True,
                     bundle: Path | None = None) -> Path:
    """The local folder holding backbone ``spec``: the folder itself, or the hub snapshot in the
    Hugging Face cache (downloaded, config and safetensors only, when the hub can be reached).

    ``trusted=False`` is for a backbone that a bundle (``bundle``) names rather than the user:
    a hub name is then only looked up in the local cache, never downloaded, and a folder must lie
    inside :func:`backbone_places`, so a tampered bundle cannot make loading reach the network or
    read and hash files anywhere on the machine.
    Raises :class:`BackboneError` with what to do when it cannot.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if not trusted and not any(path.resolve().is_relative_to(p) for p in backbone_places(bundle)):
            raise BackboneError(
                f"{bundle}: its backbone folder {spec} is outside the places a bundle may name (the "
                f"Hugging Face cache, the bundle's folder, ${BACKBONE_DIRS_ENV}); if you trust this "
                f"bundle, add the folder's parent to {BACKBONE_DIRS_ENV} (export {BACKBONE_DIRS_ENV}="
                f"{path.resolve().parent})")
        return path.resolve()
    if path.exists():
        raise BackboneError(f"--backbone {spec}: is a file; pass the model's folder (config.json + model.safetensors)")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec:
        raise BackboneError(f"--backbone {spec}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = ["*.json", "*.safetensors"]
    try:
        return Path(snapshot_download(spec, revision=revision, local_files_only=True, allow_patterns=patterns))
    except HFValidationError as exc:
        raise BackboneError(f"--backbone {spec!r} is neither a folder nor a valid model name ({exc})") from None
    except (OSError, ValueError):
        pass  # not in the local cache
    if not trusted:
        raise BackboneError(f"{bundle}: its backbone {spec!r} is not in the local Hugging Face cache, and serkit "
                            "never downloads what a bundle names; fetch it yourself first (huggingface-cli "
                            f"download {spec}), or train with --backbone {spec}")
    if _offline() or not _hub_reachable():
        raise BackboneError(f"cannot reach the model hub for {spec!r} and it is not in the local "
                            "Hugging Face cache; pass a local folder with --backbone PATH")
    try:
        return Path(snapshot_download(spec, revision=revision, allow_patterns=patterns))
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot download {spec!r} from the model hub ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0]}); pass a local folder with --backbone PATH") from None


_CHECKSUMS: dict[tuple, str] = {}


def weights_checksum(folder: Path) -> str:
    """``sha256:<hex>`` over the folder's .safetensors files (sorted by name); memoised per process."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise BackboneError(f"{folder}: no .safetensors weights; serkit does not unpickle .bin files "
                            "(re-save the model with save_pretrained(..., safe_serialization=True))")
    ident = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if ident not in _CHECKSUMS:
        h = hashlib.sha256()
        for f in files:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        _CHECKSUMS[ident] = "sha256:" + h.hexdigest()
    return _CHECKSUMS[ident]


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in d.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def _feature_settings(folder: Path | None, model_type: str, hf_config: Any) -> dict[str, Any]:
    """The feature extractor's settings from ``preprocessor_config.json`` (defaults when absent)."""
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    fe = None
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        fe = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    elif model_type == "whisper":
        fe = WhisperFeatureExtractor(feature_size=hf_config.num_mel_bins)
    else:
        fe = Wav2Vec2FeatureExtractor()
    return _json_safe(fe.to_dict())


def _is_wav2vec2_style(encoder: nn.Module) -> bool:
    return (hasattr(encoder, "_get_feat_extract_output_lengths")
            and "input_values" in inspect.signature(encoder.forward).parameters
            and hasattr(getattr(encoder, "encoder", None), "layers"))


def _load_encoder(folder: Path | None, hf_config: Any) -> nn.Module:
    """The encoder module: from ``folder``'s safetensors, or randomly initialised from ``hf_config``
    (a fine-tuned bundle then overwrites every weight)."""
    from transformers import AutoModel, WhisperForAudioClassification

    whisper = hf_config.model_type == "whisper"
    if folder is None:
        model = WhisperForAudioClassification(hf_config) if whisper else AutoModel.from_config(hf_config)
        return model.encoder if whisper else model
    cls = WhisperForAudioClassification if whisper else AutoModel
    try:
        with _quiet_transformers():
            model, info = cls.from_pretrained(str(folder), config=hf_config, local_files_only=True,
                                              use_safetensors=True, dtype=torch.float32,
                                              output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"{folder}: cannot load the backbone's weights ({str(exc).splitlines()[0]})") from None
    missing = [k for k in info.get("missing_keys", [])
               if (k.startswith("encoder.") if whisper else "masked_spec_embed" not in k)]
    mismatched = list(info.get("mismatched_keys", []))
    if missing or mismatched:
        raise BackboneError(f"{folder}: the weights do not cover the encoder (missing {sorted(missing)[:4]}, "
                            f"mismatched {mismatched[:4]})")
    return model.encoder if whisper else model

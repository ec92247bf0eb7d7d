"""Pretrained speech transformers (any Hugging Face audio encoder) as emotion classifiers.

waveform -> the backbone's own front-end (wav2vec2-style: per-clip normalisation as its
feature extractor does it; Whisper: log-mel in torch) -> Hugging Face encoder (all hidden
layers) -> per-layer normalisation -> pooling over REAL frames only (mean, mean+std, or
attention) -> learned softmax-weighted sum over layers (SUPERB) or one chosen layer -> MLP head.

Backbones load through transformers' own classes: ``AutoConfig``, ``AutoFeatureExtractor``,
``AutoModel`` (wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech, SEW…) and, for Whisper,
the encoder of ``WhisperForAudioClassification``. Only ``.safetensors`` weights are read; a
hub name is resolved to a snapshot in the Hugging Face cache (downloaded only when the hub
answers), a local folder is used as it is.

Padding never changes a clip's output:

- wav2vec2-style encoders run batched with an attention mask. Those whose convolutional
  feature encoder normalises each channel over the whole sequence (``feat_extract_norm ==
  "group"``: wav2vec2-base, HuBERT-base, WavLM) would let padding into that normalisation, so
  their first convolution's ``GroupNorm`` is replaced by :class:`MaskedGroupNorm` (same
  weights, statistics over each clip's valid frames only): a padded clip then gives the same
  hidden states as the clip run alone, in one batched, shape-static graph that exports to ONNX.
  Frame counts come from the model's own ``_get_feat_extract_output_lengths``.
- Whisper has no attention mask: every clip is zero-padded to one fixed window
  (``clip_seconds``), so a clip's input never depends on its batch. The encoder's position
  table (1500 positions = 30 s) is CROPPED to that window, so a 3 s window costs 3 s of compute
  instead of 30 s: Whisper pads its input with silence to 30 s and attends over it, which
  this replaces by 3 s (or ``clip_seconds``) of silence padding.

Freezing (``freeze``): ``head`` trains only the head (the encoder is frozen and kept in eval
mode, so its output is deterministic and can be cached, see :mod:`serkit.embeddings`);
``top:N`` also trains the top N transformer layers (and a layer norm after them);
``none`` fine-tunes everything except the convolutional front-end (wav2vec2's feature
encoder, Whisper's two convolutions and its fixed position table), which stays frozen as is
standard. ``param_groups`` gives the encoder its own learning rate (``encoder_lr``, default a
tenth of the head's).

Bundles: with ``freeze="head"`` a bundle stores the head only and references the backbone
(name or absolute folder, revision, and a sha256 of its safetensors files, checked when the
bundle loads); otherwise it stores every weight and the backbone's configuration, so it loads
without the backbone folder.
"""
from __future__ import annotations

import contextlib
import copy
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from serkit.errors import BundleError
from serkit.models.configs import (  # noqa: F401  (re-exported)
    DEFAULT_BACKBONE, POOLINGS, WHISPER_HOP, WHISPER_SAMPLES_PER_POSITION, WHISPER_STRIDE, BackboneError,
    PretrainedConfig)

# WavLM's attention passes a float position bias and a boolean padding mask to torch's
# multi-head attention, which warns on every call with a padding mask; the result is correct.
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask is deprecated")
from serkit.models.frontends import MaskedGroupNorm, WhisperLogMel, _mask_group_norm, valid_frames  # noqa: F401
from serkit.models.heads import PooledHead  # noqa: F401
from serkit.models.hub import (  # noqa: F401  (re-exported: the model's loading steps)
    BACKBONE_DIRS_ENV, _feature_settings, _hub_reachable, _is_wav2vec2_style, _json_safe, _load_encoder,
    _offline, _quiet_transformers, backbone_places, resolve_backbone, weights_checksum)


# ----------------------------------------------------------------------------- model

class PretrainedSER(nn.Module):
    """Waveforms (batch, samples) float32 at 16 kHz + valid lengths (batch,) -> logits (batch, classes)."""

    def __init__(self, config: PretrainedConfig, trusted: bool = True, bundle: Path | None = None):
        """``trusted=False``: the config comes from the bundle ``bundle``, not from the user (see
        :func:`resolve_backbone`)."""
        super().__init__()
        from transformers import AutoConfig

        self.config = c = config
        local = Path(c.backbone).expanduser()
        if local.is_dir():
            c.backbone = str(local.resolve())
        in_bundle = c.top_layers() != 0 and c.backbone_config is not None
        if in_bundle:
            # A fine-tuned bundle: the architecture comes from the stored config, every weight
            # from the bundle (load_bundle_state_dict); the backbone folder is not needed.
            stored = dict(c.backbone_config)
            hf_config = AutoConfig.for_model(stored.pop("model_type"), **stored)
            folder = None
        else:
            folder = resolve_backbone(c.backbone, c.revision, trusted=trusted, bundle=bundle)
            checksum = weights_checksum(folder)
            if c.checksum and c.checksum != checksum:
                raise BackboneError(
                    f"backbone {c.backbone}: its weights changed since this model was trained "
                    f"({checksum[:19]}… now, {c.checksum[:19]}… then); pass the original backbone")
            c.checksum = checksum
            try:
                hf_config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise BackboneError(f"{folder}: no usable config.json ({str(exc).splitlines()[0]})") from None
        self.whisper = hf_config.model_type == "whisper"
        features = c.feature_config or _feature_settings(folder, hf_config.model_type, hf_config)
        self.feature_settings = features
        if c.top_layers() == 0:   # a frozen-encoder bundle reads both from the backbone folder
            c.backbone_config = c.feature_config = None
        else:                     # a fine-tuned bundle rebuilds the architecture from them
            c.backbone_config, c.feature_config = _json_safe(hf_config.to_dict()), features
        rate = features.get("sampling_rate", c.sample_rate)
        if rate != c.sample_rate:
            raise BackboneError(f"backbone {c.backbone} expects {rate} Hz audio; serkit feeds {c.sample_rate} Hz")

        self.encoder = _load_encoder(folder, copy.deepcopy(hf_config))
        if self.whisper:
            self.frontend = WhisperLogMel(features)
            self.window_samples = self._crop_whisper_positions()
            dim = hf_config.d_model
        elif _is_wav2vec2_style(self.encoder):
            self.do_normalize = bool(features.get("do_normalize", True))
            self.group_norm = _mask_group_norm(self.encoder)
            dim = hf_config.hidden_size
        else:
            raise BackboneError(
                f"backbone {c.backbone} is a {hf_config.model_type!r} model; serkit supports wav2vec2-style "
                "encoders (wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech, SEW) and Whisper")
        if c.max_layers is not None:
            self._truncate(c.max_layers)
        self.n_hidden = len(self.layers) + 1        # the embeddings' output and every layer's
        self.head = PooledHead(self.n_hidden, dim, c)
        self._apply_freeze()

    # -- construction helpers --------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        """The encoder's transformer layers (not registered twice: a property, not an attribute)."""
        return self.encoder.layers if self.whisper else self.encoder.encoder.layers

    def _truncate(self, n: int) -> None:
        """Keep the first ``n`` transformer layers (the top hidden state still passes the
        encoder's final layer norm, where it has one)."""
        if not 1 <= n <= len(self.layers):
            raise ValueError(f"max_layers {n}: the backbone has {len(self.layers)} layers")
        kept = nn.ModuleList(list(self.layers)[:n])
        if self.whisper:
            self.encoder.layers = kept
            self.encoder.config.encoder_layers = n
        else:
            self.encoder.encoder.layers = kept
            self.encoder.config.num_hidden_layers = n

    def _crop_whisper_positions(self) -> int:
        """Crop the encoder's position table to the clip window; returns the window in samples."""
        c, enc = self.config, self.encoder
        clip = int(round(c.clip_seconds * c.sample_rate))
        positions = math.ceil(clip / WHISPER_SAMPLES_PER_POSITION)
        if positions > enc.embed_positions.num_embeddings:
            raise ValueError(f"clip_seconds {c.clip_seconds} is longer than Whisper's "
                             f"{enc.embed_positions.num_embeddings * WHISPER_SAMPLES_PER_POSITION / c.sample_rate:.0f} s")
        table = enc.embed_positions.weight.detach()[:positions].clone()
        enc.embed_positions = nn.Embedding.from_pretrained(table, freeze=True)
        enc.config.max_source_positions = positions   # the encoder checks its input against this
        return positions * WHISPER_SAMPLES_PER_POSITION

    def _frontend_modules(self) -> list[nn.Module]:
        """The convolutional front-end that stays frozen even in a full fine-tune."""
        if self.whisper:
            return [self.encoder.conv1, self.encoder.conv2, self.encoder.embed_positions]
        return [self.encoder.feature_extractor]

    def _top_modules(self) -> list[nn.Module]:
        """The top N layers, and a layer norm that follows them (Whisper; stable-layer-norm wav2vec2)."""
        n = self.config.top_layers()
        if n > len(self.layers):
            raise ValueError(f"--freeze top:{n}: the backbone has only {len(self.layers)} layers")
        mods = list(self.layers[-n:])
        if self.whisper:
            mods.append(self.encoder.layer_norm)
        elif getattr(self.encoder.config, "do_stable_layer_norm", False):
            mods.append(self.encoder.encoder.layer_norm)
        return mods

    def _apply_freeze(self) -> None:
        n = self.config.top_layers()
        self.encoder.requires_grad_(n is None)
        if n is None:
            for m in self._frontend_modules():
                m.requires_grad_(False)
        elif n > 0:
            for m in self._top_modules():
                m.requires_grad_(True)

    @property
    def frozen(self) -> bool:
        """True when no encoder weight trains (``freeze="head"``)."""
        return self.config.top_layers() == 0

    @property
    def cacheable(self) -> bool:
        """Frozen encoder and a pooling that commutes with it: train the head on cached embeddings."""
        return self.frozen and self.config.pooling in ("mean", "stats")

    def train(self, mode: bool = True) -> PretrainedSER:
        """Frozen parts stay in eval mode (no dropout, no SpecAugment, no LayerDrop) while training."""
        super().train(mode)
        n = self.config.top_layers()
        if mode and n is not None:
            self.encoder.eval()
            if n > 0:
                for m in self._top_modules():
                    m.train()
        return self

    # -- optimiser and bundles -------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The head at ``lr``; trainable encoder weights at ``encoder_lr`` (default lr / 10)."""
        groups = [{"params": [p for p in self.head.parameters() if p.requires_grad], "lr": lr}]
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        if encoder:
            groups.append({"params": encoder, "lr": self.config.encoder_lr or lr / 10})
        return groups

    def bundle_state_dict(self) -> dict[str, torch.Tensor]:
        """The head only when the encoder is frozen (the bundle references the backbone); else everything."""
        if self.frozen:
            return {f"head.{k}": v for k, v in self.head.state_dict().items()}
        return self.state_dict()

    def load_bundle_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        try:
            if self.frozen:
                extra = [k for k in state if not k.startswith("head.")]
                if extra:
                    raise RuntimeError(f"unexpected encoder weights {extra[:3]} in a frozen-encoder bundle")
                self.head.load_state_dict({k[5:]: v for k, v in state.items()})
            else:
                self.load_state_dict(state)
        except RuntimeError as exc:
            raise BundleError(f"the bundle's weights do not fit the model ({str(exc).splitlines()[0]})") from None

    def cache_identity(self) -> dict[str, Any]:
        """What determines :meth:`layer_stats` of a frozen encoder (the embedding cache's key)."""
        c = self.config
        identity = {"backbone": c.backbone, "revision": c.revision, "checksum": c.checksum,
                    "layer_norm": c.layer_norm, "sample_rate": c.sample_rate,
                    "window": getattr(self, "window_samples", None), "feature_config": self.feature_settings}
        if c.max_layers is not None:   # a truncated encoder: fewer layers, the same lower ones
            identity["max_layers"] = c.max_layers
        return identity

    # -- forward -----------------------------------------------------------------------------
    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All hidden layers (batch, layers, frames, dim) and the valid-frame mask (batch, frames)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hs, frames = (self._whisper_hidden if self.whisper else self._wav2vec2_hidden)(wave, lengths)
        if self.config.layer_norm:
            hs = F.layer_norm(hs, hs.shape[-1:])
        mask = torch.arange(hs.shape[2], device=hs.device)[None, :] < frames[:, None]
        return hs, mask

    def _whisper_hidden(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.window_samples
        if wave.shape[1] > w:
            if int(lengths.max()) > w:
                raise ValueError(f"a clip of {int(lengths.max())} samples is longer than the model window "
                                 f"({w} samples, clip_seconds {self.config.clip_seconds}); score long audio "
                                 "through the Predictor, which cuts it into windows")
            wave = wave[:, :w]
        valid = torch.arange(w, device=wave.device)[None, :] < lengths[:, None]
        x = F.pad(wave, (0, w - wave.shape[1])) * valid                 # (batch, window): zeros after each clip
        mel = self.frontend(x)                                           # (batch, mels, window / 160)
        out = self.encoder(mel, output_hidden_states=True)
        hs = torch.stack(out.hidden_states, dim=1)                       # (batch, layers, window / 320, dim)
        frames = (torch.div(lengths + WHISPER_HOP - 1, WHISPER_HOP, rounding_mode="floor") + 1) // 2
        return hs, frames.clamp(1, hs.shape[2])

    def _normalize(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Zero mean, unit variance over each clip's valid samples (Wav2Vec2FeatureExtractor's do_normalize)."""
        x = x.masked_fill(~valid, 0.0)
        if not self.do_normalize:
            return x
        n = valid.sum(dim=1, keepdim=True).clamp_min(1)
        mean = x.sum(dim=1, keepdim=True) / n
        var = ((x - mean).masked_fill(~valid, 0.0) ** 2).sum(dim=1, keepdim=True) / n
        return ((x - mean) / torch.sqrt(var + 1e-7)).masked_fill(~valid, 0.0)

    def _wav2vec2_hidden(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Eager runs crop the batch to its longest clip (less compute); an exported graph keeps
        # its input width, which gives the same valid frames because everything is masked.
        x = wave if torch.compiler.is_exporting() else wave[:, :int(lengths.max())]
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        x = self._normalize(x, valid)                                    # (batch, samples)
        frames = self.encoder._get_feat_extract_output_lengths(lengths).long()
        masking = contextlib.nullcontext()
        if self.group_norm is not None:     # the first convolution's output frames of each clip
            conv = self.encoder.feature_extractor.conv_layers[0].conv
            masking = valid_frames(torch.div(lengths - conv.kernel_size[0], conv.stride[0],
                                             rounding_mode="floor") + 1)
        with masking:
            out = self.encoder(x, attention_mask=valid.long(), output_hidden_states=True)
        hs = torch.stack(out.hidden_states, dim=1)                       # (batch, layers, frames, dim)
        return hs, frames.clamp(1, hs.shape[2])

    def layer_stats(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of every hidden layer over each clip's valid frames,
        each (batch, layers, dim): what the embedding cache stores for a frozen encoder."""
        hs, mask = self.hidden_states(wave, lengths)
        m = mask[:, None, :, None].to(hs.dtype)                          # (batch, 1, frames, 1)
        count = m.sum(dim=2)                                             # (batch, 1, 1)
        mean = (hs * m).sum(dim=2) / count                               # (batch, layers, dim)
        var = (((hs - mean[:, :, None]) * m) ** 2).sum(dim=2) / count
        return mean, torch.sqrt(var + 1e-6)

    def pool(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The head's input from layer statistics: (batch, layers, dim), or (batch, layers, 2 * dim) for stats."""
        return torch.cat([mean, std], dim=-1) if self.config.pooling == "stats" else mean

    def pooled_layers(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-layer pooled features over valid frames (mean or stats pooling)."""
        return self.pool(*self.layer_stats(wave, lengths))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        lengths = lengths.to(wave.device).long().clamp(1, wave.shape[1])
        if self.config.pooling == "attention":
            hs, mask = self.hidden_states(wave, lengths)
            return self.head.attend(self.head.combine(hs), mask)        # (batch, classes)
        return self.head(self.pooled_layers(wave, lengths))              # (batch, classes)

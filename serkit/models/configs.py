"""The model families' architecture settings: dataclasses with no torch, so a bundle's config can
be read, checked (:mod:`serkit.bundle_schema`) and described without importing PyTorch. Each is
saved in a bundle's config.json and rebuilds its model (:mod:`serkit.models.cnn_lstm`,
:mod:`serkit.models.pretrained`, :mod:`serkit.models.encoder_head`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from serkit.bundle_schema import MAX_MEMBERS, MEMBER_TYPES  # noqa: F401  (what an ensemble may hold)
from serkit.settings import setting

# Log-mel front-end of the CNN-LSTM (serkit.features.LogMel)
N_FFT = 400        # 25 ms at 16 kHz, the analysis window itself (as Whisper; 3.5x faster STFT than 512)
WIN_LENGTH = 400   # 25 ms analysis window
HOP_LENGTH = 160   # 10 ms: 100 frames per second, 301 frames for a 3 s clip
N_MELS = 64


@dataclass
class CNNLSTMConfig:
    """Architecture settings; saved in the bundle's config.json and used to rebuild the model."""

    #: What bundles written before a setting existed (or changed its default) were trained with.
    LEGACY: ClassVar[dict[str, Any]] = {"downsample": "pool", "n_fft": 512}

    n_classes: int = 6
    sample_rate: int = 16000
    n_fft: int = N_FFT
    win_length: int = WIN_LENGTH
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    normalize: str = "utterance"
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    # How each conv block halves time and frequency: "stride" (every convolution strided) or
    # "pool" (the first convolution strided, the others at full resolution followed by 2x2
    # max-pooling: 4x the later blocks' multiply-adds; the first shipped model's design).
    downsample: str = "stride"
    lstm_hidden: int = 96
    pooling: str = "attention"     # "attention" or "mean", both over valid frames only
    dropout: float = 0.3
    # SpecAugment (training only): masks per example and their maximum widths
    freq_masks: int = 2
    freq_mask_width: int = 8
    time_masks: int = 2
    time_mask_width: int = 25


# Pretrained Hugging Face encoders
DEFAULT_BACKBONE = "facebook/wav2vec2-base"

#: An encoder-head bundle's optional speaker head (same-speaker adaptation, serkit.speaker): weight,
#: bias and the table of its class-mean logits, in that order.
SPEAKER_KEYS = ("speaker_weight", "speaker_bias", "speaker_table")
POOLINGS = ("mean", "stats", "attention")
WHISPER_HOP = 160            # samples per Whisper mel frame (10 ms at 16 kHz)
WHISPER_STRIDE = 2           # the second convolution halves time: one position per 20 ms
WHISPER_SAMPLES_PER_POSITION = WHISPER_HOP * WHISPER_STRIDE   # 320 samples per encoder frame


class BackboneError(ValueError):
    """A backbone that cannot be found, reached, trusted or used; names the backbone and the fix."""


@dataclass
class PretrainedConfig:
    """Architecture settings; saved in the bundle's config.json and used to rebuild the model.

    ``checksum`` is filled when the backbone loads and verified when a frozen-encoder bundle
    loads the backbone again; ``backbone_config`` and ``feature_config`` (the Hugging Face model
    and feature-extractor settings) are filled when the encoder trains, so that a fine-tuned
    bundle rebuilds the model without the backbone folder.
    """

    n_classes: int = 6
    backbone: str = setting(DEFAULT_BACKBONE, "Hugging Face model name or local folder (stored as an absolute "
                            "path): wav2vec2, HuBERT, WavLM, data2vec-audio or Whisper", metavar="NAME_OR_PATH")
    revision: str | None = None        # hub revision (branch, tag or commit) for hub names
    checksum: str | None = None        # "sha256:..." of the backbone's .safetensors files
    freeze: str = setting("head", "head: only the head trains, on cached embeddings; top:N: also the top N "
                          "encoder layers; none: full fine-tune (the convolutional front-end stays frozen)",
                          metavar="head|top:N|none")
    pooling: str = setting("mean", "over real frames: mean, stats (mean and std) or attention", choices=POOLINGS)
    layer_weights: bool = setting(True, "learned weighted sum over all hidden layers (off: one layer, the last "
                                        "unless `layer` says)")
    layer: int = -1                    # the hidden layer used without layer_weights (0 = embeddings)
    concat_layers: bool = False        # concatenate every layer's features instead (overrides the two above)
    max_layers: int | None = None      # keep only the first N transformer layers (less compute)
    layer_norm: bool = True            # normalise each layer's frames (no parameters) before pooling
    head_hidden: int = 256             # hidden units of the MLP head (0: a linear head)
    dropout: float = 0.2
    encoder_lr: float | None = setting(None, "learning rate of trainable encoder layers (default: --lr / 10)")
    clip_seconds: float = 3.0          # the model window; Whisper's position table is cropped to it
    sample_rate: int = 16000
    backbone_config: dict[str, Any] | None = None
    feature_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of: {', '.join(POOLINGS)}")
        self.top_layers()  # validates freeze
        if self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")

    def top_layers(self) -> int | None:
        """N for ``freeze="top:N"``, 0 for ``head``, None for ``none`` (everything trains)."""
        f = str(self.freeze)
        if f == "head":
            return 0
        if f == "none":
            return None
        if f.startswith("top:") and f[4:].isdigit() and int(f[4:]) >= 1:
            return int(f[4:])
        raise ValueError(f"unknown --freeze {self.freeze!r}; choose head, top:N (N >= 1 layers) or none")


# Heads on a frozen ONNX encoder
HEAD_POOLINGS = ("stats", "mean")
COMBINES = ("weighted", "concat")


@dataclass
class EncoderHeadConfig:
    """The head's architecture and the encoder it reads; stored in the bundle's config.json.

    The defaults are the shipped default model's design: the mean of Whisper-base's hidden
    layers 1-4 over the speech, side by side (2,048 features), standardised, and a logistic
    regression. On fold 0 of the pool's speaker CV it beat an MLP on per-layer mean and std
    (pool UAR 0.796 against 0.769; see the README's results).
    """

    n_classes: int = 6
    backbone: str = "serkit:whisper-base-l4"   # serkit:NAME (shipped) or a file in the bundle
    layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4])   # hidden layers used (0 = embeddings)
    dim: int = 512                  # the encoder's hidden size
    pooling: str = "mean"           # mean: mean per layer; stats: mean and std
    combine: str = "concat"         # concat: the layers side by side; weighted: a learned softmax-weighted sum
    head_hidden: int = 0            # 0: a linear head, fitted as a logistic regression; > 0: an MLP (Lightning)
    dropout: float = 0.3            # MLP heads only

    def __post_init__(self) -> None:
        if self.pooling not in HEAD_POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose {', '.join(HEAD_POOLINGS)}")
        if self.combine not in COMBINES:
            raise ValueError(f"unknown combine {self.combine!r}; choose {', '.join(COMBINES)}")
        if not self.layers or any(not isinstance(i, int) or i < 0 for i in self.layers):
            raise ValueError(f"layers must be a non-empty list of hidden-layer indices, not {self.layers}")

    @property
    def features(self) -> int:
        return self.dim * (2 if self.pooling == "stats" else 1)


# Several trained models of one split, averaged (serkit ensemble)
@dataclass
class EnsembleConfig:
    """Models trained on one split (by different seeds), answering together: the mean of their
    calibrated probabilities. Each member is ``{"model_type", "model_config", "temperature",
    "seed"}`` as its own bundle recorded it; the members' weights sit side by side in the
    ensemble's ``model.safetensors`` (``members.0.…``, ``members.1.…``)."""

    n_classes: int = 6
    members: list[dict[str, Any]] = field(default_factory=list)

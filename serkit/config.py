"""Training configuration, kept free of heavy imports so the CLI starts fast."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from serkit.audio import CACHE_ROOT as DEFAULT_CACHE  # noqa: E402  (one cache root)

#: Split protocols (see serkit.splits).
SPLITS = ("speaker", "random", "corpus")

#: Model families: a CNN-LSTM from scratch, a Hugging Face encoder (frozen or fine-tuned), or a
#: head on a frozen ONNX encoder (the shipped default's family).
MODELS = ("cnn_lstm", "pretrained", "encoder_head")
MONITORS = ("val_uar", "val_macro_f1", "val_accuracy")
#: Voice-activity detectors of emotion timelines (serkit.timeline): auto = silero when installed, else energy.
VADS = ("auto", "silero", "energy", "none")
#: ``serkit serve``'s connection limits (waitress settings, plus serkit's request deadline): ``connection_limit``
#: open connections at most; ``channel_timeout`` seconds before an idle connection is closed;
#: ``cleanup_interval`` seconds between checks; ``request_timeout`` seconds for a request to arrive whole
#: (a client that trickles its headers or body, "slowloris", is cut off then).
SERVE_DEFAULTS = {"connection_limit": 500, "channel_timeout": 30, "cleanup_interval": 5, "request_timeout": 60}


@dataclass
class TrainConfig:
    """Everything a training run depends on; written to the run folder and the bundle."""

    model: str = field(default="cnn_lstm", metadata={"help": "model family: " + ", ".join(MODELS)})
    emotions: list[str] | None = field(default=None, metadata={
        "help": "labels to train on (default: every emotion in the manifest, in canonical order)"})
    split: str = field(default="speaker", metadata={"help": "speaker (default), random (leaky), corpus"})
    test_corpus: str | None = field(default=None, metadata={"help": "held-out corpus for --split corpus"})
    test_size: float = field(default=0.2, metadata={"help": "share of clips (speakers) for test"})
    val_size: float = field(default=0.15, metadata={"help": "share of clips (speakers) for validation"})
    seed: int = field(default=0, metadata={"help": "seed for the split, initialisation and augmentation"})
    epochs: int = field(default=40, metadata={"help": "maximum epochs"})
    patience: int = field(default=12, metadata={"help": "epochs without validation gain before stopping"})
    monitor: str = field(default="val_uar", metadata={"help": "validation metric for early stopping: " + ", ".join(MONITORS)})
    batch_size: int = field(default=32, metadata={"help": "clips per batch"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (one-cycle schedule)"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    label_smoothing: float = field(default=0.05, metadata={"help": "cross-entropy label smoothing"})
    class_weights: bool = field(default=True, metadata={"help": "weight the loss by inverse class frequency"})
    balance_corpora: bool = field(default=False, metadata={
        "help": "draw training clips so that every corpus weighs the same per epoch"})
    corpus_label_mask: bool = field(default=True, metadata={
        "help": "leave out of a clip's loss the classes its corpus does not have (serkit.pool)"})
    augment: bool = field(default=True, metadata={"help": "gain/noise/crop and SpecAugment while training"})
    speed_perturb: bool = field(default=True, metadata={"help": "speed perturbation (0.9-1.1) among the augmentations"})
    mixup: float = field(default=0.0, metadata={"help": "mixup Beta(alpha, alpha) on waveforms; 0 turns it off"})
    clip_seconds: float = field(default=3.0, metadata={"help": "model window in seconds"})
    vad: str = field(default="auto", metadata={
        "help": "speech detector of the scorer, stored in the bundle: auto (silero), silero, energy "
                "(any loud sound is speech: for synthetic data), none (the clip in pieces of one window)"})
    model_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "architecture overrides (fields of the model's config dataclass)"})
    accelerator: str = field(default="cpu", metadata={"help": "Lightning accelerator: cpu, gpu, auto"})
    devices: int | str = field(default=1, metadata={"help": "Lightning devices per node"})
    num_nodes: int = field(default=1, metadata={"help": "Lightning nodes"})
    strategy: str = field(default="auto", metadata={"help": "Lightning strategy (ddp for several devices)"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers (audio is decoded up front)"})
    cache_dir: str | None = field(default=str(DEFAULT_CACHE), metadata={"help": "decoded-audio cache ('' for none)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"unknown monitor {self.monitor!r}; choose one of: {', '.join(MONITORS)}")
        if self.vad not in VADS:
            raise ValueError(f"unknown vad {self.vad!r}; choose one of: {', '.join(VADS)}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose {', '.join(MODELS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

"""Every setting of the command line, in one file: the training run (:class:`TrainConfig`),
prediction (:class:`PredictSettings`) and the web server (:class:`ServeSettings`).

Each field is declared once, with its type, default, help text and bounds; the ``serkit``
command's options are generated from them (:mod:`serkit.settings`), and the same checks run
when a setting is built in Python. Only options that describe one run rather than a setting
(paths, ``--out``, ``--resume``, ``--force``...) are written by hand in :mod:`serkit.cli`.
Kept free of heavy imports so the CLI starts fast.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from serkit.audio import CACHE_ROOT as DEFAULT_CACHE, MIN_SECONDS  # one cache root, one minimum
from serkit.bundle_schema import MAX_CLIP_SECONDS, Rule
from serkit.settings import check_settings, setting

#: Split protocols (see serkit.splits).
SPLITS = ("speaker", "random", "corpus")

#: Model families: a CNN-LSTM from scratch, a Hugging Face encoder (frozen or fine-tuned), or a
#: head on a frozen ONNX encoder (the shipped default's family).
MODELS = ("cnn_lstm", "pretrained", "encoder_head")
MONITORS = ("val_uar", "val_macro_f1", "val_accuracy")
#: Voice-activity detectors of emotion timelines (serkit.timeline): auto = silero when installed, else energy.
VADS = ("auto", "silero", "energy", "none")

SHARE = Rule(0, 1, lo_open=True, hi_open=True)
AT_LEAST_0, AT_LEAST_1, POSITIVE = Rule(0), Rule(1), Rule(0, lo_open=True)


def emotion_list(text: str) -> list[str] | None:
    """``--emotions``: 'manifest' (None: every emotion the manifest holds), 'default', 'all' or a comma list."""
    from serkit.emotions import resolve_emotions

    return None if text == "manifest" else list(resolve_emotions(text))


def devices(text: str) -> int | str:
    """``--devices``: a count, or a Lightning word such as 'auto'."""
    return int(text) if text.isdigit() else text


#: TrainConfig fields that say how one run ran, not what it learned: left out of a bundle's card,
#: and free to differ when a run is resumed.
RUN_ONLY = ("cache_dir", "progress", "num_workers", "accelerator", "devices", "num_nodes", "strategy")


@dataclass
class TrainConfig:
    """Everything a training run depends on; written to the run folder and the bundle."""

    model: str = setting("cnn_lstm", "model family: cnn_lstm, pretrained (a Hugging Face encoder) or "
                         "encoder_head (a head on a frozen ONNX encoder, e.g. the shipped serkit:whisper-base-l4)",
                         choices=MODELS)
    emotions: list[str] | None = setting(None, "labels to train on: 'manifest' (every emotion it holds; the "
                                         "default), 'default', 'all' or a comma list", parse=emotion_list,
                                         metavar="LIST")
    split: str = setting("speaker", "speaker: no speaker in two parts; random: LEAKY utterance split; "
                         "corpus: leave one corpus out", choices=SPLITS)
    test_corpus: str | None = setting(None, "held-out corpus for --split corpus", metavar="CORPUS")
    test_size: float = setting(0.2, "share of clips (of speakers, by --split speaker) for test", rule=SHARE)
    val_size: float = setting(0.15, "share of clips (of speakers, by --split speaker) for validation", rule=SHARE)
    seed: int = setting(0, "seed of the split, initialisation and augmentation")
    split_seed: int | None = setting(None, "seed of the split alone (default: --seed): runs with different "
                                           "--seed and one --split-seed share a split, as serkit ensemble's members must")
    epochs: int = setting(40, "maximum epochs", rule=AT_LEAST_1)
    patience: int = setting(12, "epochs without validation gain before stopping", rule=AT_LEAST_0)
    monitor: str = setting("val_uar", "validation metric that picks the epoch and stops early", choices=MONITORS)
    batch_size: int = setting(32, "clips per training step", rule=AT_LEAST_1)
    lr: float = setting(2e-3, "peak learning rate (one-cycle schedule; 0 leaves the weights as initialised)",
                        rule=Rule(0, 10))
    weight_decay: float = setting(1e-2, "AdamW weight decay", rule=AT_LEAST_0)
    label_smoothing: float = setting(0.05, "cross-entropy label smoothing", rule=Rule(0, 1, hi_open=True))
    class_weights: bool = setting(True, "weight the loss by inverse class frequency")
    balance_corpora: bool = setting(False, "draw training clips so that every corpus weighs the same per epoch")
    corpus_label_mask: bool = setting(False, "leave out of a clip's loss the classes its corpus does not have "
                                      "(serkit.pool); off by default: measured, it makes models answer "
                                      "those classes for that corpus's voices")
    refit: bool = setting(True, "a linear encoder head (fitted in closed form): once C is chosen on validation, "
                          "refit it on the training and validation clips (the head fitted before the refit "
                          "fits the temperature and gives the validation figures)")
    refit_epochs: bool = setting(False, "a model trained in epochs on waveforms (the CNN-LSTM, a fine-tuned encoder): "
                                 "once validation has chosen the best epoch, train it again from the same "
                                 "initialisation on the training and validation clips for that many epochs "
                                 "(the first run fits the temperature and gives the validation figures; about "
                                 "twice the training time; on one device)")
    rooms: bool = setting(True, "train on simulated rooms, reverberation over babble or noise (serkit.rooms): "
                          "an encoder head on one room view beside each training clip; a model learning from "
                          "waveforms (the CNN-LSTM, a fine-tuned encoder) hears 3 in 10 of its training clips in a room")
    augment: bool = setting(True, "training-time augmentation: gain, noise, crop and SpecAugment")
    speed_perturb: bool = setting(True, "speed perturbation (0.9-1.1) among the augmentations")
    mixup: float = setting(0.0, "mixup Beta(alpha, alpha) on waveforms; 0 turns it off", rule=AT_LEAST_0)
    ema: float = setting(0.0, "exponential moving average of the weights, its decay per step (e.g. 0.998): "
                         "validation, the best epoch and the bundle use the averaged weights; 0 turns it off",
                         rule=Rule(0, 1, hi_open=True))
    clip_seconds: float = setting(3.0, "model window in seconds", rule=Rule(0, MAX_CLIP_SECONDS, lo_open=True))
    vad: str = setting("auto", "speech detector of the scorer, stored in the bundle: auto (silero), silero, "
                       "energy (any loud sound is speech: for synthetic data), none (the clip in pieces of one "
                       "window)", choices=VADS)
    model_options: dict[str, Any] = setting(default_factory=dict, help="architecture settings as JSON, e.g. "
                                            "'{\"pooling\": \"mean\"}': fields of the model family's config "
                                            "dataclass (serkit/models/configs.py)")
    accelerator: str = setting("cpu", "Lightning accelerator: cpu, gpu, auto")
    devices: int | str = setting(1, "Lightning devices per node (an integer, or 'auto')", parse=devices,
                                 metavar="N|auto")
    num_nodes: int = setting(1, "machines (Lightning num_nodes)", rule=AT_LEAST_1)
    strategy: str = setting("auto", "Lightning strategy (ddp for several devices)")
    num_workers: int = setting(0, "DataLoader workers (audio is decoded up front)", rule=AT_LEAST_0)
    cache_dir: str | None = setting(str(DEFAULT_CACHE), "decoded-audio cache folder ('' for none)", metavar="DIR")
    progress: bool = setting(True, "progress bars (--no-progress for logs)")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


#: ``serkit predict --same-speaker --speakers``: all the files are one voice, each folder's, each
#: speaker's of a manifest CSV, or each voice a speaker model tells apart (serkit.inputs.speaker_groups).
SPEAKER_GROUPS = ("one", "folder", "manifest", "voice")

#: Help sections of ``serkit predict`` (the CLI adds its run-only options to them).
BATCH_JOBS = "batch jobs (PATH may also be a manifest CSV with a File/path column)"
LONG_RECORDINGS = "long recordings (--timeline; --output FILE.json|.csv)"
SPEECH_DETECTION = "speech detection (files and --timeline)"


@dataclass
class PredictSettings:
    """How ``serkit predict`` scores files and prints the answers."""

    format: str = setting("table", "what to print: a table (probabilities to 2 decimals), or JSON or CSV "
                          "(4 decimals)", choices=("table", "json", "csv"), flags=("--format", "-f"))
    batch_size: int = setting(32, "files (or timeline windows) per model call", rule=AT_LEAST_1)
    same_speaker: bool = setting(False, "the files are one voice (with --timeline: each recording is): adapt "
                                 "the answers to it (the default model; helps from about 8 clips or segments, "
                                 "whatever their mix of emotions)")
    speakers: str = setting("one", "with --same-speaker, which files are one voice: all of them (one), each "
                            "folder's, each speaker's of the manifest CSV named (its speaker column), or each voice a "
                            "speaker model tells apart (voice: files of several unknown voices; with --timeline, the "
                            "voices of each recording, as in a call)",
                            choices=SPEAKER_GROUPS)
    runtime: str = setting("auto", "torch (a bundle) or onnx (a folder from serkit export --onnx); auto: by "
                           "the folder", choices=("auto", "torch", "onnx"))
    workers: int = setting(0, "processes decoding audio (0: in this process)", rule=Rule(0, 1024), group=BATCH_JOBS)
    progress: bool = setting(True, "a progress bar on stderr", group=BATCH_JOBS)
    engine: str = setting("local", "local, or ray: Ray Data with model actors (pip install 'serkit[ray]')",
                          choices=("local", "ray"), group=BATCH_JOBS)
    actors: int = setting(2, "--engine ray: model actors", rule=AT_LEAST_1, group=BATCH_JOBS)
    ray_address: str | None = setting(None, "--engine ray: a cluster to join (auto, ray://HOST:10001); "
                                      "default: a local Ray", metavar="ADDR", group=BATCH_JOBS)
    vad: str = setting("auto", "speech detector: silero (Silero VAD, shipped inside serkit), energy (level above the "
                       "noise floor), none (fixed segments, digitally silent ones left out); auto: silero when "
                       "onnxruntime is installed (it is in every install), else energy; default: the model's own "
                       "(auto for the shipped models)",
                       choices=VADS, group=SPEECH_DETECTION)
    max_segment: float = setting(10.0, "split longer speech segments into equal parts (default: 10)", rule=POSITIVE,
                                 metavar="SECONDS", group=SPEECH_DETECTION)
    # at least MIN_SECONDS: a shorter piece is "no speech" whatever it holds
    segment_seconds: float | None = setting(None, "segment length with --vad none (default: the model's "
                                            f"window; at least {MIN_SECONDS})", rule=Rule(MIN_SECONDS),
                                            metavar="SECONDS", group=LONG_RECORDINGS)

    def __post_init__(self) -> None:
        check_settings(self)


#: Help section of ``serkit serve``'s connection limits.
CONNECTIONS = "connections (waitress; put a reverse proxy in front of a public server, see docs/web.md)"


@dataclass
class ServeSettings:
    """``serkit serve``: the models, the address, and the limits that keep one client from taking the
    server down (waitress settings, plus serkit's request deadline against clients that trickle their
    headers or body, "slowloris")."""

    models: list[str] | None = setting(None, "bundle folder or shipped model (default, fast) to serve; repeat "
                                       "for several (default: both shipped models, the default first)",
                                       flags=("--model", "-m"), metavar="[NAME=]BUNDLE",
                                       repeat=True)
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = setting(5000, "port to listen on; 0 picks a free one (printed at start-up)", rule=Rule(0, 65535))
    threads: int = setting(4, "request threads", rule=Rule(1, 256))
    torch_threads: int | None = setting(1, "threads one prediction may use (requests run in parallel "
                                        "instead)", rule=Rule(1, 1024))
    max_upload_mb: float = setting(20.0, "largest upload in MB", rule=Rule(0.001, 4096))
    max_seconds: float = setting(120.0, "longest audio in seconds", rule=Rule(0.5, 36000))
    connection_limit: int = setting(500, "open connections at most; more wait in the listen queue",
                                    rule=Rule(1, 100000), group=CONNECTIONS)
    channel_timeout: int = setting(30, "seconds before a connection that sends nothing is closed",
                                   rule=Rule(1, 86400), group=CONNECTIONS)
    request_timeout: int = setting(60, "seconds for a request to arrive whole, else its connection is closed: "
                                   "a client trickling bytes cannot hold a connection", rule=Rule(1, 86400),
                                   group=CONNECTIONS)
    cleanup_interval: int = setting(5, "seconds between checks of the two timeouts", rule=Rule(1, 3600),
                                    group=CONNECTIONS)
    vad: str | None = setting(None, "speech detector when a request names none (default: each model's own, "
                              "silero for the shipped ones; energy = any loud sound; none = the clip in pieces "
                              "of one window)", choices=VADS)
    quiet: bool = setting(False, "no access log (by default every request is logged to stderr with its status "
                          "and time)", flags=("--quiet", "-q"))

    def __post_init__(self) -> None:
        check_settings(self)

"""Tiny synthetic labelled corpora for the CNN-LSTM pipeline tests.

Each "emotion" is a sound with its own spectral signature, easy for a small model to tell apart
from a log-mel spectrogram:

- ``angry``: band-limited noise between 2.5 and 4 kHz,
- ``happy``: a pure tone around 1 kHz,
- ``sad``:   a pure tone around 220 Hz,

with a random frequency jitter, gain and a little white noise per clip, so no two clips are the
same. Speakers only vary the jitter; they exist so that the default speaker split works.

Two layouts: a CSV manifest (``write_tone_corpus``) and a RAVDESS-named tree read by
``serkit prepare`` (``write_ravdess_tree``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from serkit.manifest import Utterance, write_manifest

SR = 16000
EMOTIONS = ("angry", "happy", "sad")
#: RAVDESS emotion codes of EMOTIONS (field 3 of the name).
RAVDESS_CODES = {"angry": "05", "happy": "03", "sad": "04"}


def tone_clip(emotion: str, seconds: float = 0.5, rng: np.random.Generator | None = None,
              sr: int = SR) -> np.ndarray:
    """One synthetic clip (float32, 1-D) of ``emotion``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    if emotion == "angry":
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        lo = 2500 + rng.uniform(-100, 100)
        spec[(freqs < lo) | (freqs > lo + 1500)] = 0
        x = np.fft.irfft(spec, n)
        x = x / (np.abs(x).max() + 1e-9)
    elif emotion == "happy":
        x = np.sin(2 * np.pi * rng.uniform(950, 1050) * t + rng.uniform(0, 2 * np.pi))
    elif emotion == "sad":
        x = np.sin(2 * np.pi * rng.uniform(200, 240) * t + rng.uniform(0, 2 * np.pi))
    else:
        raise ValueError(f"no synthetic sound for {emotion!r}")
    x = rng.uniform(0.2, 0.5) * x + 0.005 * rng.standard_normal(n)
    return x.astype(np.float32)


def write_clip(path: str | Path, wave: np.ndarray, sr: int = SR) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype="FLOAT")
    return path


@dataclass
class SynthCorpus:
    root: Path
    manifest: Path
    utterances: list[Utterance]


def write_tone_corpus(root: str | Path, speakers: int = 8, per_emotion: int = 4,
                      seconds: float = 0.5, emotions: tuple[str, ...] = EMOTIONS,
                      seed: int = 0, corpus: str = "synth") -> SynthCorpus:
    """``speakers`` x ``emotions`` x ``per_emotion`` clips under ``root/wav/`` and a manifest
    ``root/manifest.csv`` (written with :func:`serkit.manifest.write_manifest`)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    utts = []
    for s in range(speakers):
        spk = f"spk{s:02d}"
        for emotion in emotions:
            for k in range(per_emotion):
                path = write_clip(root / "wav" / spk / f"{emotion}_{k}.wav", tone_clip(emotion, seconds, rng))
                utts.append(Utterance(corpus=corpus, speaker=spk, emotion=emotion, path=path,
                                      label=emotion, duration=seconds, sample_rate=SR))
    manifest = write_manifest(utts, root / "manifest.csv")
    return SynthCorpus(root, manifest, utts)


def write_ravdess_tree(root: str | Path, actors: int = 6, seconds: float = 0.5,
                       emotions: tuple[str, ...] = EMOTIONS, seed: int = 0) -> list[Path]:
    """A RAVDESS-named tree ``root/Actor_XX/03-01-EE-II-SS-RR-XX.wav``: for each actor and
    emotion, the four statement x repetition clips at normal intensity."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = []
    for a in range(1, actors + 1):
        for emotion in emotions:
            for statement in ("01", "02"):
                for rep in ("01", "02"):
                    name = f"03-01-{RAVDESS_CODES[emotion]}-01-{statement}-{rep}-{a:02d}.wav"
                    paths.append(write_clip(root / f"Actor_{a:02d}" / name, tone_clip(emotion, seconds, rng)))
    return paths


def write_corrupt(path: str | Path, n: int = 3000, seed: int = 0) -> Path:
    """Random bytes under a .wav name: libsndfile cannot decode it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def tiny_config(**overrides):
    """A TrainConfig small enough to train in seconds on a laptop CPU."""
    from serkit.training import TrainConfig

    base = dict(epochs=6, patience=50, batch_size=16, lr=1e-2, clip_seconds=0.5,
                model_options={"channels": [4, 8, 8], "lstm_hidden": 16}, cache_dir=None,
                progress=False, seed=0, vad="energy",   # tones are not speech to silero
                rooms=False)   # the babble of other tones is another class's tone: tests that need rooms ask
    base.update(overrides)
    return TrainConfig(**base)


_TRAINED: dict[str, object] = {}


def trained_run(tmp_path_factory):
    """One tiny CNN-LSTM trained on a tone corpus, shared by every test of the session that needs
    a trained model (read-only: tests must not change the run folder).

    Returns ``(corpus, run_folder, report)``.
    """
    if "run" not in _TRAINED:
        from serkit.training import train

        base = tmp_path_factory.mktemp("trained")
        corpus = write_tone_corpus(base / "corpus", speakers=8, per_emotion=4, seed=0)
        report = train(corpus.manifest, base / "run", tiny_config(epochs=5))
        _TRAINED["run"] = (corpus, base / "run", report)
    return _TRAINED["run"]


# ----------------------------------------------------------------------------- tiny backbones

_CONV = dict(conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
             num_conv_pos_embedding_groups=2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=48, vocab_size=12)


def make_backbone(root: str | Path, family: str, seed: int = 0) -> Path:
    """A tiny randomly initialised backbone of ``family`` (wav2vec2, hubert, wavlm or whisper)
    saved with save_pretrained under ``root``: what tests load instead of hub checkpoints."""
    import torch
    from transformers import (HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Model, WavLMConfig, WavLMModel, WhisperConfig, WhisperFeatureExtractor,
                              WhisperModel)

    torch.manual_seed(seed)
    folder = Path(root) / family
    if family == "wav2vec2":
        Wav2Vec2Model(Wav2Vec2Config(feat_extract_norm="group", **_CONV)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(folder)
    elif family == "hubert":
        HubertModel(HubertConfig(feat_extract_norm="layer", **_CONV)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
    elif family == "wavlm":   # group-normalised, gated relative position bias
        WavLMModel(WavLMConfig(feat_extract_norm="group", num_buckets=32, max_bucket_distance=64,
                               **_CONV)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
    elif family == "whisper":
        WhisperModel(WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=48, decoder_ffn_dim=48, num_mel_bins=20, vocab_size=16, max_target_positions=16,
            init_std=0.2,  # at the default 0.02 the sinusoidal positions drown a random encoder's input
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)).save_pretrained(folder)
        WhisperFeatureExtractor(feature_size=20).save_pretrained(folder)
    else:
        raise ValueError(family)
    return folder

"""Audio in: decode anything libsndfile reads into 16 kHz mono float32, pad or crop, cache.

Constants follow Whisper's style: the derived values are spelled out beside them.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000          # Hz: every model in serkit sees 16 kHz mono
CLIP_SECONDS = 3.0           # default model window
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)  # 48000 samples in a 3 s window
MAX_SECONDS = 3600.0         # load_audio refuses longer inputs (an hour is 230 MB of float32);
                             # long recordings go through the streaming timeline instead
UNKNOWN_LENGTH = 2**62       # frame counts from here up mean "not in the header" (libsndfile: 2**63 - 1)
MIN_SECONDS = 0.25           # shorter audio is not scored: too little to hear an emotion in
SILENCE_DBFS = -60.0         # audio whose RMS level (DC removed) is at or below this is silence
MAX_AMPLITUDE = 1000.0       # float samples beyond +-1000 (+60 dBFS) are not audio scaled to +-1
                             # (int16 values stored as float, garbage); 1e18 overflowed the features

AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO


class AudioError(ValueError):
    """Audio that cannot be used: undecodable, empty, non-finite or too long. Names the source."""


class UnscorableAudio(AudioError):
    """Decodable audio that cannot be scored: ``reason`` is ``too_short``, ``silent`` or
    ``out_of_range`` (samples far outside [-1, 1]). ``duration_s`` and ``level_dbfs`` say what
    was measured (None where not measured)."""

    def __init__(self, message: str, reason: str, duration_s: float | None = None,
                 level_dbfs: float | None = None):
        super().__init__(message)
        self.reason, self.duration_s, self.level_dbfs = reason, duration_s, level_dbfs


def check_samples(data: np.ndarray, name: str) -> None:
    """Raise :class:`AudioError` for NaN/inf samples and :class:`UnscorableAudio` for samples
    beyond :data:`MAX_AMPLITUDE` (they overflow the model's features into NaN)."""
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > MAX_AMPLITUDE:
        raise UnscorableAudio(f"{name}: samples reach {peak:.3g}, far outside [-1, 1]; float audio must be "
                              "scaled to +-1 (int16 values stored as float?)", "out_of_range")


class SignalLevel:
    """Length and RMS level (DC removed) of audio seen block by block, for :func:`check_scorable`
    on recordings too long to hold in memory."""

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, block: np.ndarray) -> SignalLevel:
        block = np.asarray(block, np.float64)
        self.n += block.size
        self.total += float(block.sum())
        self.squares += float(np.square(block).sum())
        return self

    @property
    def rms(self) -> float:
        if not self.n:
            return 0.0
        mean = self.total / self.n
        return float(np.sqrt(max(self.squares / self.n - mean * mean, 0.0)))

    def check(self, sample_rate: int, name: str, min_seconds: float = MIN_SECONDS,
              silence_dbfs: float = SILENCE_DBFS) -> None:
        """Raise :class:`UnscorableAudio` when the audio is shorter than ``min_seconds`` or its
        level is at or below ``silence_dbfs``."""
        seconds = self.n / sample_rate
        if seconds < min_seconds:
            raise UnscorableAudio(f"{name}: {seconds:.2f} s of audio is too short to score; at least "
                                  f"{min_seconds:g} s is needed", "too_short", duration_s=round(seconds, 3))
        rms = self.rms
        level = 20 * float(np.log10(rms)) if rms > 0 else float("-inf")
        if rms <= 10 ** (silence_dbfs / 20):
            raise UnscorableAudio(f"{name}: the audio is silent (level {level:.0f} dBFS, at or below "
                                  f"{silence_dbfs:g} dBFS); nothing to score", "silent",
                                  duration_s=round(seconds, 3), level_dbfs=level)


def check_scorable(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, name: str = "<waveform>",
                   min_seconds: float = MIN_SECONDS, silence_dbfs: float = SILENCE_DBFS) -> None:
    """The one rule for what serkit scores (CLI, Python API, web): at least ``min_seconds`` of
    audio whose level is above ``silence_dbfs``, with samples within :data:`MAX_AMPLITUDE`.
    Raises :class:`UnscorableAudio` (an :class:`AudioError`) naming ``name`` otherwise."""
    check_samples(wave, name)
    SignalLevel().add(wave).check(sample_rate, name, min_seconds, silence_dbfs)


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return getattr(source, "name", None) or "<file object>"


def open_length_error(name: str, exc: Exception) -> AudioError:
    """The error for a file whose header leaves the length open and that libsndfile cannot decode
    to its end (it fails on the last frame of such FLACs). Truncating silently would lose audio,
    so the message says what the file is and how to fix it."""
    return AudioError(f"{name}: the header leaves the length open (a streamed recording), and libsndfile "
                      f"cannot decode such a file to its end ({exc}); re-encode it with its length, "
                      "e.g. ffmpeg -i IN OUT.flac")


def load_audio(
    source: AudioSource,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = MAX_SECONDS,
) -> np.ndarray:
    """Decode ``source`` (a path, raw bytes or a binary file object) to mono float32 at ``sample_rate``.

    Any channel count is averaged to mono; any rate is resampled with soxr (high quality).
    Returns a 1-D array of samples in [-1, 1] (float inputs are kept as they are).
    Raises :class:`AudioError` for undecodable, zero-length, NaN/inf-filled input and for input
    longer than ``max_seconds`` (checked from the header, before decoding); ``None`` disables the cap.
    Samples beyond :data:`MAX_AMPLITUDE` raise :class:`UnscorableAudio`. Short or silent audio is
    returned (training may use it); :func:`check_scorable` is the check before scoring.
    """
    name = _describe(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError(f"{name}: empty input (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise AudioError(f"{name}: file not found")
    too_long = ("{name}: {seconds} s is longer than the {limit:.0f} s limit; split it, or score it "
                "as a timeline (serkit predict --timeline)")
    try:
        with sf.SoundFile(source) as f:
            rate, frames = f.samplerate, f.frames
            cap = None if max_seconds is None else int(max_seconds * rate)
            if frames >= UNKNOWN_LENGTH:
                # A streamed file (e.g. FLAC from a live encoder) whose header leaves the length
                # open: libsndfile reports 2**63 - 1 frames. Decode in blocks up to the cap.
                blocks, total = [], 0
                while True:
                    try:
                        block = f.read(1 << 16, dtype="float32", always_2d=True)
                    except (sf.LibsndfileError, RuntimeError) as exc:
                        raise open_length_error(name, exc) from None
                    if not len(block):
                        break
                    blocks.append(block)
                    total += len(block)
                    if cap is not None and total > cap:
                        raise AudioError(too_long.format(name=name, seconds=f"over {max_seconds:.0f}",
                                                         limit=max_seconds))
                data = np.concatenate(blocks) if blocks else np.zeros((0, f.channels), np.float32)
            elif cap is not None and frames > cap:
                raise AudioError(too_long.format(name=name, seconds=f"{frames / rate:.0f}", limit=max_seconds))
            else:
                data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as exc:
        raise AudioError(f"{name}: cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    check_samples(wave, name)
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def pad_or_trim(wave: np.ndarray, length: int, crop: str = "center",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Zero-pad (at the end) or crop ``wave`` to exactly ``length`` samples.

    ``crop`` says which part of a longer clip to keep: ``"center"`` (evaluation: deterministic),
    ``"start"``, or ``"random"`` (training: a new window each epoch, drawn from ``rng``).
    """
    n = wave.shape[-1]
    if n == length:
        return wave
    if n < length:
        return np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(0, length - n)])
    if crop == "center":
        start = (n - length) // 2
    elif crop == "start":
        start = 0
    elif crop == "random":
        start = int((rng or np.random.default_rng()).integers(0, n - length + 1))
    else:
        raise ValueError(f"unknown crop policy {crop!r}; choose center, start or random")
    return wave[..., start:start + length]


class WaveformCache:
    """Decoded waveforms on disk, so a training run (and the next one) decodes each file once.

    A file's entry is keyed by its absolute path, size, modification time and the target sample
    rate, so a changed file or a new rate is decoded again. Entries are ``.npy`` files read with
    ``allow_pickle=False``.
    """

    def __init__(self, folder: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.hits = 0
        self.misses = 0

    def key(self, path: str | os.PathLike) -> str:
        p = Path(path).resolve()
        st = p.stat()
        ident = f"{p}|{st.st_size}|{st.st_mtime_ns}|{self.sample_rate}"
        return hashlib.sha1(ident.encode()).hexdigest()

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """The waveform of ``path``, from the cache when it is fresh; raises AudioError like load_audio."""
        entry = self.folder / f"{self.key(path)}.npy"
        if entry.is_file():
            self.hits += 1
            return np.load(entry, allow_pickle=False)
        self.misses += 1
        wave = load_audio(path, self.sample_rate)
        tmp = entry.with_name(f"{entry.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, wave, allow_pickle=False)
        os.replace(tmp, entry)
        return wave

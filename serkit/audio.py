"""Audio in: decode anything libsndfile reads into 16 kHz mono float32, pad or crop, cache.

Constants follow Whisper's style: the derived values are spelled out beside them.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr
from rich.progress import track

SAMPLE_RATE = 16000          # Hz: every model in serkit sees 16 kHz mono
MIN_SECONDS = 0.25           # shorter audio cannot hold speech the VAD would keep (its 250 ms minimum):
                             # the scorer answers it "no speech", prepare leaves such clips out
CLIP_SECONDS = 3.0           # default model window
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)  # 48000 samples in a 3 s window
MAX_SECONDS = 1200.0         # load_audio refuses longer inputs: 20 min is 77 MB of float32 at 16 kHz, and
                             # scoring it holds about 6x that in windows; long recordings go through the
                             # streaming timeline instead (bounded memory at any length)
BUDGET_RATE, BUDGET_CHANNELS = 48000, 2   # the raw-sample budget: max_seconds of 48 kHz stereo (as the web app's)
MAX_SAMPLES = int(MAX_SECONDS * BUDGET_RATE * BUDGET_CHANNELS)   # 115.2 M samples x channels
BLOCK_VALUES = 1 << 22       # samples x channels decoded per block (16 MB of float32): the multichannel
                             # source is never held whole, only its mono mix at the target rate
CACHE_ROOT = Path(os.environ.get("SERKIT_CACHE", Path.home() / ".cache" / "serkit"))  # every cache lives here
UNKNOWN_LENGTH = 2**62       # frame counts from here up mean "not in the header" (libsndfile: 2**63 - 1)
MAX_AMPLITUDE = 1000.0       # float samples beyond +-1000 (+60 dBFS) are not audio scaled to +-1
                             # (int16 values stored as float, garbage); 1e18 overflowed the features

AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO


@dataclass(frozen=True)
class AudioSpec:
    """How a model hears audio, defined once and stored in every bundle as ``config["audio"]``.

    A clip is scored in windows of ``clip_seconds``; a longer stretch of speech is cut into
    windows that overlap by ``overlap`` (the last one ends at the speech's end).
    """

    sample_rate: int = SAMPLE_RATE     # Hz, mono
    clip_seconds: float = CLIP_SECONDS  # the model window
    overlap: float = 0.5                # share of a window repeated by the next one

    def __post_init__(self) -> None:
        if not 0 < self.clip_seconds <= 60 or not 0 <= self.overlap < 1 or not 1000 <= self.sample_rate <= 192000:
            raise ValueError(f"invalid audio spec {self}: clip_seconds in (0, 60], overlap in [0, 1), "
                             "sample_rate in [1000, 192000]")

    @property
    def window_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))   # 48000 for 3 s at 16 kHz

    @property
    def hop_samples(self) -> int:
        return max(1, int(round(self.window_samples * (1 - self.overlap))))   # 24000 at 50 % overlap

    @classmethod
    def from_config(cls, audio: dict[str, Any]) -> AudioSpec:
        """The spec of a bundle's ``audio`` section (older bundles lack ``overlap``: 0.5)."""
        return cls(sample_rate=int(audio.get("sample_rate", SAMPLE_RATE)),
                   clip_seconds=float(audio.get("clip_seconds", CLIP_SECONDS)),
                   overlap=float(audio.get("overlap", 0.5)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AudioError(ValueError):
    """Audio that cannot be used: undecodable, empty, non-finite or too long. Names the source."""


class CutShortAudio(UserWarning):
    """A file that holds less audio than its header names (an interrupted copy or download): it is
    scored on what it holds, and this warning says so (the CLI prints it as a ``note:``)."""


#: Data sizes a writer puts in a WAV header when it cannot know the length (a pipe): not a claim.
PLACEHOLDER_BYTES = 0x7FFFF000


def header_frames(f: sf.SoundFile) -> int:
    """The frames ``f``'s header names: more than ``f.frames`` (what it holds) for a WAV cut short,
    by libsndfile's own header check (``data : N (should be M)``, N > M bytes); ``f.frames``
    otherwise, and for sizes of :data:`PLACEHOLDER_BYTES` or more, which streaming writers put
    there (AIFF, RF64 and formats without a length, such as Ogg, cannot tell)."""
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", f.extra_info, re.MULTILINE)
    named, held = (int(m[1]), int(m[2])) if m else (0, 0)
    return round(f.frames * named / held) if held and held < named < PLACEHOLDER_BYTES else f.frames


def cut_short(f: sf.SoundFile) -> tuple[float, float] | None:
    """(seconds ``f`` holds, seconds its header names) when it holds at least 10 ms less, else None."""
    named = header_frames(f)
    return (f.frames / f.samplerate, named / f.samplerate) if named - f.frames >= f.samplerate / 100 else None


def warn_if_cut_short(f: sf.SoundFile, name: str) -> None:
    """Warn :class:`CutShortAudio` when ``f`` is :func:`cut_short`."""
    seconds = cut_short(f)
    if seconds:
        warnings.warn(CutShortAudio(f"{name} is cut short: it holds {seconds[0]:.2f} s of the {seconds[1]:.2f} s "
                                    "its header names (scored on what it holds)"), stacklevel=3)


class OutOfRangeAudio(AudioError):
    """Decodable audio whose samples lie far outside [-1, 1] (beyond :data:`MAX_AMPLITUDE`)."""


def check_samples(data: np.ndarray, name: str) -> None:
    """Raise :class:`AudioError` for NaN/inf samples and :class:`OutOfRangeAudio` for samples
    beyond :data:`MAX_AMPLITUDE` (1e18 overflowed a model's features into NaN)."""
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > MAX_AMPLITUDE:
        raise OutOfRangeAudio(f"{name}: samples reach {peak:.3g}, far outside [-1, 1]; float audio must be "
                              "scaled to +-1 (int16 values stored as float?)")


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fsencode(source).decode("utf-8", "backslashreplace")   # printable, whatever the name's bytes
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return getattr(source, "name", None) or "<file object>"


def _source(source: AudioSource) -> tuple[str, Any]:
    """The source's printable name and what libsndfile opens (a path as bytes, so that any name
    opens, UTF-8 or not; bytes as a file object). Raises AudioError for 0 bytes or a missing file."""
    name = _describe(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError(f"{name}: empty input (0 bytes)")
        return name, io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"{name}: file not found")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: empty file (0 bytes)")
        return name, os.fsencode(source)
    return name, source


#: What libsndfile raises for input it cannot open or read.
DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, EOFError)


def _undecodable(name: str, exc: Exception) -> AudioError:
    """libsndfile's reason, without the "Error opening b'...': " that repeats the name as bytes."""
    reason = getattr(exc, "error_string", None) or re.sub(r"^Error opening .*?: ", "", str(exc))
    return AudioError(f"{name}: cannot decode audio ({reason.rstrip('.')})")


def _open(name: str, opened: Any) -> sf.SoundFile:
    """The open file (a context manager); AudioError naming it when libsndfile cannot open it."""
    try:
        return sf.SoundFile(opened)
    except DECODE_ERRORS as exc:
        raise _undecodable(name, exc) from None


def open_length_error(name: str, exc: Exception) -> AudioError:
    """The error for a file whose header leaves the length open and that libsndfile cannot decode
    to its end (it fails on the last frame of such FLACs). Truncating silently would lose audio,
    so the message says what the file is and how to fix it."""
    return AudioError(f"{name}: the header leaves the length open (a streamed recording), and libsndfile "
                      f"cannot decode such a file to its end ({exc}); re-encode it with its length, "
                      "e.g. ffmpeg -i IN OUT.flac")


def sample_budget(max_seconds: float) -> int:
    """Raw samples x channels that ``max_seconds`` of 48 kHz stereo hold: what a decode may cost."""
    return int(max_seconds * BUDGET_RATE * BUDGET_CHANNELS)


def mono_blocks(f: sf.SoundFile, name: str, sample_rate: int, frames: int | None = None,
                limit: int | None = None, check_range: bool = False) -> Iterator[np.ndarray]:
    """The open file's mono mix at ``sample_rate``, decoded and resampled (soxr HQ, streaming:
    bit-identical to resampling all at once) block by block: at most ``frames`` source frames and
    :data:`BLOCK_VALUES` samples x channels per block, so memory never holds the multichannel
    source. Yields nothing for a file without frames. Raises AudioError for a failed read, more
    than ``limit`` frames, non-finite samples, and (``check_range``) for a block beyond
    :data:`MAX_AMPLITUDE` (:class:`OutOfRangeAudio`)."""
    rate, channels = f.samplerate, f.channels
    open_length = f.frames >= UNKNOWN_LENGTH   # a streamed file (e.g. FLAC from a live encoder): 2**63 - 1
    resampler = (soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
                 if rate != sample_rate else None)
    block = max(1, min(BLOCK_VALUES if frames is None else frames, BLOCK_VALUES // max(channels, 1)))
    total = 0
    while True:
        try:
            data = f.read(block, dtype="float32", always_2d=True)
        except DECODE_ERRORS as exc:
            raise (open_length_error(name, exc) if open_length else _undecodable(name, exc)) from None
        if not len(data):
            break
        total += len(data)
        if limit is not None and total > limit:
            raise AudioError(f"{name}: the header leaves the length open and the audio goes on past "
                             f"{limit / rate:.0f} s, the most decoded at once; split it, or score it as a "
                             "timeline (serkit predict --timeline)")
        mono = data.mean(axis=1) if channels > 1 else data[:, 0]
        if check_range:
            check_samples(mono, name)
        elif not np.isfinite(mono).all():
            raise AudioError(f"{name}: contains NaN or infinite samples")
        yield resampler.resample_chunk(np.ascontiguousarray(mono)) if resampler else mono
    if resampler is not None and total:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def load_audio(
    source: AudioSource,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = MAX_SECONDS,
    max_samples: int | None = MAX_SAMPLES,
    note_cut_short: bool = True,
) -> np.ndarray:
    """Decode ``source`` (a path, raw bytes or a binary file object) to mono float32 at ``sample_rate``.

    Any channel count is averaged to mono; any rate is resampled with soxr (high quality), block
    by block (:func:`mono_blocks`), so memory holds the mono result and one block, never the whole
    multichannel source. Returns a 1-D array of samples in [-1, 1] (float inputs are kept as they are).
    Raises :class:`AudioError` for undecodable, zero-length, NaN/inf-filled input, for input
    longer than ``max_seconds`` and for input holding more than ``max_samples`` samples x channels
    (both checked from the header, before decoding; a header without a length is checked while
    decoding); ``None`` disables a cap. A WAV cut short is decoded for what it holds, with a
    :class:`CutShortAudio` warning unless ``note_cut_short`` is False (a caller with its own rule).
    Samples beyond :data:`MAX_AMPLITUDE` raise :class:`OutOfRangeAudio`.
    """
    name, opened = _source(source)
    with _open(name, opened) as f:
        rate, frames, channels = f.samplerate, f.frames, f.channels
        if note_cut_short:
            warn_if_cut_short(f, name)
        cap = None if max_seconds is None else int(max_seconds * rate)
        limit = None
        if frames < UNKNOWN_LENGTH:
            if cap is not None and frames > cap:
                raise AudioError(f"{name}: {frames / rate:.0f} s is longer than the {max_seconds:.0f} s limit; "
                                 "split it, or score it as a timeline (serkit predict --timeline)")
            if max_samples is not None and frames * channels > max_samples:
                raise too_many_samples(name, frames, channels, rate, max_samples)
        else:   # no length in the header: checked while decoding, stopped as soon as it goes past a cap
            caps = [c for c in (cap, None if max_samples is None else max_samples // channels) if c is not None]
            limit = min(caps) if caps else None
        parts = list(mono_blocks(f, name, sample_rate, limit=limit))
    if not parts:
        raise AudioError(f"{name}: contains no samples")
    wave = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    check_samples(wave, name)
    return wave


#: A file decoded or not: ``(file, wave, None)``, or ``(file, None, error)``.
Decoded = tuple[str, np.ndarray | None, str | None]


def decode_item(file: str, sample_rate: int = SAMPLE_RATE) -> Decoded:
    """``(file, wave, None)``, or ``(file, None, error)`` when :func:`load_audio` refuses the file:
    how every loop over many files decodes (the Predictor's, batch jobs' workers, Ray's actors),
    so one bad file becomes a recorded error and the others go on."""
    try:
        return file, load_audio(file, sample_rate), None
    except AudioError as exc:
        return file, None, str(exc)


def too_many_samples(name: str, frames: int, channels: int, rate: int, max_samples: int) -> AudioError:
    return AudioError(f"{name}: {frames / rate:.0f} s of {channels} channel(s) at {rate} Hz is {frames * channels:,} "
                      f"samples, more than the {max_samples:,} decoded at once ({max_samples / 96000:.0f} s of "
                      "48 kHz stereo); score it as a timeline (serkit predict --timeline), or downmix it first")


class AudioStream:
    """A recording as mono float32 blocks at ``sample_rate`` (:func:`mono_blocks`, about
    ``block_seconds`` each), in bounded memory at any length; each iteration is a new pass.

    ``source`` is a path (anything libsndfile reads, any rate and channel count) or a 1-D
    waveform already at ``sample_rate``. Unlike :func:`load_audio` it has no length cap: this is
    how the timeline reads long recordings.
    """

    def __init__(self, source: str | os.PathLike | np.ndarray, sample_rate: int, block_seconds: float = 20.0):
        self.sample_rate = sample_rate
        self.block_seconds = block_seconds
        if isinstance(source, np.ndarray):
            if source.ndim != 1:
                raise AudioError(f"<waveform>: expected a 1-D array, got shape {source.shape}")
            self.wave, self.name = np.asarray(source, dtype=np.float32), "<waveform>"
            check_samples(self.wave, self.name)
            self.duration_s, self.open_length = len(self.wave) / sample_rate, False
            return
        self.wave, self.source = None, source
        self.name, opened = _source(source)
        with _open(self.name, opened) as f:
            self.source_rate, frames = f.samplerate, f.frames
            warn_if_cut_short(f, self.name)
        if frames == 0:
            raise AudioError(f"{self.name}: contains no samples")
        self.open_length = frames >= UNKNOWN_LENGTH      # a streamed file: the header has no length
        self.duration_s = 0.0 if self.open_length else frames / self.source_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.wave is not None:
            block = int(self.block_seconds * self.sample_rate)
            for i in range(0, len(self.wave), block):
                yield self.wave[i:i + block]
            return
        with _open(*_source(self.source)) as f:
            yield from mono_blocks(f, self.name, self.sample_rate, frames=int(self.block_seconds * self.source_rate),
                                   check_range=True)


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


def decode_all(utts: Sequence[Any], sample_rate: int = SAMPLE_RATE,
               cache_root: str | os.PathLike | None | type[Ellipsis] = ...,
               progress: bool = True) -> list[np.ndarray]:
    """Waveforms of ``utts`` (anything with a ``path``) in order, through the on-disk cache in
    ``cache_root/waveforms`` (default: :data:`CACHE_ROOT`; None: no cache; train and evaluate
    share the one cache root).

    Raises :class:`~serkit.audio.AudioError` naming the first file that cannot be decoded:
    a manifest should only hold files that ``prepare`` could read.
    """
    cache_root = CACHE_ROOT if cache_root is ... else cache_root
    cache = WaveformCache(Path(cache_root) / "waveforms", sample_rate) if cache_root is not None else None
    load = cache.load if cache else (lambda p: load_audio(p, sample_rate))
    items = track(utts, description="decoding audio", disable=not progress, transient=True)
    return [load(u.path) for u in items]

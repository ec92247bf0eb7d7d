"""Emotions over time in long recordings, streamed through in bounded memory.

    serkit predict --timeline call.wav [--vad auto|silero|energy|none] [-o timeline.json|.csv] [--plot t.png]
    predictor.predict_timeline("call.wav")          # the same from Python

Two passes over the audio, each reading blocks with soundfile and resampling them with soxr's
streaming resampler (bit-identical to resampling the whole file at once), so memory does not
grow with the recording's length:

1. Voice-activity detection gives a speech score per 32 ms frame (512 samples at 16 kHz) and
   from those, speech segments: frames above ``threshold`` start speech, speech goes on while
   frames stay above ``threshold - 0.15``, pauses shorter than ``min_silence_ms`` are bridged,
   segments shorter than ``min_speech_ms`` dropped, ``speech_pad_ms`` added at both ends, and
   segments longer than ``max_segment_s`` split into equal parts.
2. Each segment is scored like a clip by the Predictor: one window if it is shorter than the
   model's window, otherwise windows with 50 % overlap whose probabilities are averaged. So a
   segment's probabilities equal ``predictor.predict_proba([segment])``.

Detectors (``vad``):

- ``silero``: Silero VAD (the ``silero-vad`` package carries the model, so it works offline),
  its batched "sequence" ONNX model run by onnxruntime, the LSTM state carried across blocks.
  It detects human speech: pure tones and noise are not speech to it.
- ``energy``: a fallback without extra packages. A frame is speech when its level is above
  ``max(-50 dBFS, min(floor + 15 dB, peak - 10 dB))``, where floor and peak are the 10th and
  99th percentiles of the recording's frame levels (the second term keeps a recording that is
  mostly speech from being taken for all noise). It cannot tell speech from other loud sound.
- ``auto`` (default): silero when installed (``pip install 'serkit[timeline]'``), else energy.
- ``none``: no detection, consecutive fixed segments of ``segment_s`` seconds (default: the
  model's window).
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from serkit.audio import BLOCK_VALUES, UNKNOWN_LENGTH, AudioError, open_length_error
from serkit.config import VADS
from serkit.inference import Predictor, softmax, window_starts

FRAME = 512            # VAD frame: 32 ms at 16 kHz (Silero's frame size)
ENERGY_FLOOR_DB = -50.0
ENERGY_MARGIN_DB = 15.0       # speech: this far above the noise floor (10th percentile)...
ENERGY_PEAK_MARGIN_DB = 10.0  # ...or, in recordings that are mostly loud, within this of the peak


# ------------------------------------------------------------------------------------ audio

class AudioStream:
    """A recording as mono float32 blocks at ``sample_rate``; each iteration is a new pass.

    ``source`` is a path (anything libsndfile reads, any rate and channel count) or a 1-D
    waveform already at ``sample_rate``.
    """

    def __init__(self, source: str | os.PathLike | np.ndarray, sample_rate: int, block_seconds: float = 20.0):
        self.sample_rate = sample_rate
        self.block_seconds = block_seconds
        if isinstance(source, np.ndarray):
            if source.ndim != 1:
                raise AudioError(f"<waveform>: expected a 1-D array, got shape {source.shape}")
            self.wave, self.name = np.asarray(source, dtype=np.float32), "<waveform>"
            self.duration_s, self.open_length = len(self.wave) / sample_rate, False
            return
        self.wave, self.name, self.path = None, os.fsencode(source).decode("utf-8", "backslashreplace"), source
        if not Path(source).is_file():
            raise AudioError(f"{self.name}: file not found")
        try:
            with sf.SoundFile(os.fsencode(self.path)) as f:
                self.source_rate, frames, self.channels = f.samplerate, f.frames, f.channels
        except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as exc:
            raise AudioError(f"{self.name}: cannot decode audio ({exc})") from None
        if frames == 0:
            raise AudioError(f"{self.name}: contains no samples")
        self.open_length = frames >= UNKNOWN_LENGTH      # a streamed file: the header has no length
        self.duration_s = 0.0 if self.open_length else frames / self.source_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        block = int(self.block_seconds * self.sample_rate)
        if self.wave is not None:
            for i in range(0, len(self.wave), block):
                yield self.wave[i:i + block]
            return
        resampler = (soxr.ResampleStream(self.source_rate, self.sample_rate, 1, dtype="float32", quality="HQ")
                     if self.source_rate != self.sample_rate else None)
        try:
            with sf.SoundFile(os.fsencode(self.path)) as f:
                # at most BLOCK_VALUES samples x channels at a time, whatever the channel count
                frames = max(1, min(int(self.block_seconds * self.source_rate), BLOCK_VALUES // max(self.channels, 1)))
                for data in f.blocks(blocksize=frames, dtype="float32",
                                     always_2d=True):
                    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                    if not np.isfinite(mono).all():
                        raise AudioError(f"{self.name}: contains NaN or infinite samples")
                    yield resampler.resample_chunk(np.ascontiguousarray(mono)) if resampler else mono
        except (sf.LibsndfileError, RuntimeError, EOFError) as exc:
            if self.open_length:
                raise open_length_error(self.name, exc) from None
            raise AudioError(f"{self.name}: cannot decode audio ({exc})") from None
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def frames_of(blocks: Iterator[np.ndarray], frame: int = FRAME) -> Iterator[np.ndarray]:
    """Re-cut a stream of blocks into arrays of whole frames (n, frame); the last frame is padded."""
    rest = np.zeros(0, np.float32)
    for block in blocks:
        data = np.concatenate([rest, block]) if len(rest) else block
        n = len(data) // frame
        if n:
            yield np.asarray(data[:n * frame], np.float32).reshape(n, frame)
        rest = data[n * frame:]
    if len(rest):
        yield np.pad(rest, (0, frame - len(rest))).astype(np.float32)[None]


# -------------------------------------------------------------------------------------- VAD

@functools.lru_cache(maxsize=2)
def _silero_session(path: str):
    """One onnxruntime session per process (``run`` is thread-safe; the LSTM state lives in each
    :class:`SileroVAD`), so a web server does not reload the model for every long upload."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class SileroVAD:
    """Silero VAD's speech probability per 512-sample frame, streamed block by block.

    Runs the package's "sequence" ONNX model (one onnxruntime call per block of frames), carrying
    its LSTM state and the 64-sample context from block to block, so the probabilities are those
    of Silero's own whole-array ``audio_forward``.
    """

    name = "silero"
    CONTEXT = 64

    def __init__(self):
        try:
            import onnxruntime as ort
            from silero_vad import data as silero_data
        except ImportError as exc:
            raise ValueError(f"--vad silero needs silero-vad and onnxruntime: pip install 'serkit[timeline]' "
                             f"(or use --vad energy) ({exc})") from None
        self.session = _silero_session(str(Path(silero_data.__file__).parent / "silero_vad_16k_sequence.onnx"))
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(self.CONTEXT, np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Speech probabilities (n,) of ``frames`` (n, 512), continuing from the previous call."""
        contexts = np.empty((len(frames), self.CONTEXT), np.float32)
        contexts[0] = self.context
        contexts[1:] = frames[:-1, -self.CONTEXT:]
        self.context = frames[-1, -self.CONTEXT:].copy()
        probs, self.h, self.c = self.session.run(
            ["speech_probs", "hn", "cn"],
            {"input": np.concatenate([contexts, frames], axis=1), "h": self.h, "c": self.c})
        return np.asarray(probs, np.float32).reshape(-1)

    def finish(self, scores: np.ndarray) -> np.ndarray:
        return scores


class EnergyVAD:
    """Frame level in dBFS; after the pass, speech where it is well above the recording's floor."""

    name = "energy"

    def reset(self) -> None:
        pass

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        power = np.mean(frames.astype(np.float64) ** 2, axis=1)
        return (10 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)

    def finish(self, scores: np.ndarray) -> np.ndarray:
        """dBFS per frame -> 1.0 (speech) or 0.0 against the adaptive threshold."""
        if not len(scores):
            return scores
        floor, peak = np.percentile(scores, [10, 99])
        threshold = max(ENERGY_FLOOR_DB, min(floor + ENERGY_MARGIN_DB, peak - ENERGY_PEAK_MARGIN_DB))
        return (scores > threshold).astype(np.float32)


def make_vad(vad: str):
    if vad not in VADS:
        raise ValueError(f"unknown --vad {vad!r}; choose {', '.join(VADS)}")
    if vad == "auto":
        try:
            import onnxruntime  # noqa: F401
            import silero_vad  # noqa: F401
        except ImportError:
            return EnergyVAD()
        return SileroVAD()
    return SileroVAD() if vad == "silero" else EnergyVAD()


def speech_segments(probs: np.ndarray, n_samples: int, sample_rate: int, frame: int = FRAME,
                    threshold: float = 0.5, min_speech_ms: float = 250, min_silence_ms: float = 300,
                    speech_pad_ms: float = 100) -> list[tuple[int, int]]:
    """[start, end) sample ranges of speech from per-frame speech probabilities (hysteresis,
    bridged pauses, minimum length, padding; see the module docstring)."""
    off = max(threshold - 0.15, 0.01)
    runs, start = [], None
    for i, p in enumerate(probs):
        if start is None and p >= threshold:
            start = i
        elif start is not None and p < off:
            runs.append([start, i])
            start = None
    if start is not None:
        runs.append([start, len(probs)])
    min_gap = min_silence_ms / 1000 * sample_rate / frame
    merged: list[list[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < min_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    min_len = min_speech_ms / 1000 * sample_rate
    pad = int(speech_pad_ms / 1000 * sample_rate)
    out: list[tuple[int, int]] = []
    for s, e in merged:
        if (e - s) * frame < min_len:
            continue
        a, b = max(0, s * frame - pad), min(n_samples, e * frame + pad)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], b)
        elif b > a:
            out.append((a, b))
    return out


def split_long(segments: list[tuple[int, int]], max_samples: int) -> list[tuple[int, int]]:
    """Split segments longer than ``max_samples`` into the fewest equal parts that fit."""
    out = []
    for s, e in segments:
        k = max(1, math.ceil((e - s) / max_samples))
        bounds = np.linspace(s, e, k + 1).round().astype(int)
        out += [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return out


# --------------------------------------------------------------------------------- timeline

@dataclass
class Segment:
    start: float                      # seconds
    end: float
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    windows: int                      # model windows averaged for this segment


@dataclass
class Timeline:
    """Speech segments of one recording with their emotions, and the VAD's per-frame scores."""

    file: str
    duration_s: float
    labels: list[str]
    vad: str
    segments: list[Segment]
    frame_s: float = FRAME / 16000
    speech_prob: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "duration_s": round(self.duration_s, 3), "vad": self.vad,
                "labels": self.labels, "segments": [asdict(s) for s in self.segments]}

    def csv_rows(self) -> list[list[Any]]:
        return [[self.file, f"{s.start:.3f}", f"{s.end:.3f}", s.emotion, f"{s.confidence:.4f}",
                 *[f"{s.probabilities[l]:.4f}" for l in self.labels], s.windows] for s in self.segments]

    def csv_header(self) -> list[str]:
        return ["file", "start", "end", "emotion", "confidence", *self.labels, "windows"]

    def plot(self, path: str | os.PathLike) -> Path:
        """A PNG: each emotion's probability per segment over time, and the speech score below."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        minutes = self.duration_s > 600
        unit, scale = ("min", 60.0) if minutes else ("s", 1.0)
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True,
                                          gridspec_kw={"height_ratios": [4, 1]})
        colors = plt.get_cmap("tab10")
        for k, label in enumerate(self.labels):
            xs, ys = [], []
            for s in self.segments:
                xs += [s.start / scale, s.end / scale, np.nan]
                ys += [s.probabilities[label]] * 2 + [np.nan]
            top.plot(xs, ys, color=colors(k % 10), lw=2, label=label)
        for s in self.segments:
            top.axvspan(s.start / scale, s.end / scale, color=colors(self.labels.index(s.emotion) % 10),
                        alpha=0.08, lw=0)
        for s in self.segments:
            if (s.end - s.start) > 0.03 * self.duration_s:
                top.text((s.start + s.end) / 2 / scale, 1.04, s.emotion, ha="center", va="bottom", fontsize=8,
                         color=colors(self.labels.index(s.emotion) % 10), clip_on=False)
        top.set(ylim=(-0.02, 1.02), ylabel="probability")
        fig.suptitle(f"{Path(self.file).name}: emotion over time ({len(self.segments)} segments, vad {self.vad})")
        top.legend(loc="upper right", ncol=min(len(self.labels), 7), fontsize=8)
        if len(self.speech_prob):
            step = max(1, len(self.speech_prob) // 4000)      # at most ~4000 points drawn
            t = np.arange(0, len(self.speech_prob), step) * self.frame_s / scale
            bottom.plot(t, self.speech_prob[::step], color="0.3", lw=0.8)
        for s in self.segments:
            bottom.axvspan(s.start / scale, s.end / scale, color="tab:green", alpha=0.2, lw=0)
        bottom.set(ylabel="speech", xlabel=f"time ({unit})", xlim=(0, self.duration_s / scale))
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def write_timelines(timelines: list[Timeline], path: str | os.PathLike) -> Path:
    """Write timelines to ``.json`` (one object, or a list for several files) or ``.csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        data = timelines[0].to_dict() if len(timelines) == 1 else [t.to_dict() for t in timelines]
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    elif path.suffix == ".csv":
        path.write_text(timelines_csv(timelines), encoding="utf-8")
    else:
        raise ValueError(f"--output {path}: a timeline is written to .json or .csv")
    return path


def timelines_csv(timelines: list[Timeline]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    if timelines:
        w.writerow(timelines[0].csv_header())
    for t in timelines:
        w.writerows(t.csv_rows())
    return buf.getvalue()


def predict_timeline(predictor: Predictor, source: str | os.PathLike | np.ndarray, *, vad: str = "auto",
                     threshold: float = 0.5, min_speech_ms: float = 250, min_silence_ms: float = 300,
                     speech_pad_ms: float = 100, max_segment_s: float = 10.0, segment_s: float | None = None,
                     batch_size: int = 32, block_seconds: float = 20.0, progress: bool = False) -> Timeline:
    """The emotion timeline of a recording (a path, or a 1-D waveform at the model's rate).

    Memory stays bounded by the block size, the model's batch and one score per 32 ms frame
    (450 KB per hour), whatever the length of the recording.
    """
    from serkit.batch import progress_bar

    sr = predictor.sample_rate
    stream = AudioStream(source, sr, block_seconds)
    detector = None if vad == "none" else make_vad(vad)
    if segment_s is not None and segment_s <= 0:
        raise ValueError(f"--segment-seconds must be positive, not {segment_s}")
    if max_segment_s <= 0:
        raise ValueError(f"--max-segment must be positive, not {max_segment_s}")
    with progress_bar(progress) as bar:
        # pass 1: score frames for speech (or only count the samples)
        reader = _Counted(stream, bar, "speech detection (s)" if detector else "reading (s)")
        scores = [detector(frames) for frames in frames_of(iter(reader))] if detector else [len(b) for b in reader]
        n_samples = reader.samples
        probs = detector.finish(np.concatenate(scores)) if detector and scores else np.zeros(0, np.float32)
        if detector is not None:
            segments = split_long(speech_segments(probs, n_samples, sr, FRAME, threshold, min_speech_ms,
                                                  min_silence_ms, speech_pad_ms), int(max_segment_s * sr))
        else:
            step = int(round((segment_s or predictor.clip_samples / sr) * sr))
            segments = [(s, min(s + step, n_samples)) for s in range(0, n_samples, step)]
        # pass 2: score each segment's windows
        sums, counts = _score_segments(predictor, _Counted(stream, bar, "emotion (s)"), segments, batch_size)
    labels = predictor.labels
    out = []
    for (s, e), p, n in zip(segments, sums, counts):
        mean = p / max(n, 1)
        best = int(np.argmax(mean))
        out.append(Segment(start=round(s / sr, 3), end=round(e / sr, 3), emotion=labels[best],
                           confidence=round(float(mean[best]), 6),
                           probabilities={l: round(float(v), 6) for l, v in zip(labels, mean)}, windows=int(n)))
    return Timeline(file=stream.name, duration_s=n_samples / sr, labels=labels,
                    vad=detector.name if detector else "none", segments=out, frame_s=FRAME / sr,
                    speech_prob=probs.astype(np.float32))


class _Counted:
    """One pass over the stream that counts samples and advances a progress-bar task (seconds)."""

    def __init__(self, stream: AudioStream, bar, description: str):
        self.stream, self.bar, self.samples = stream, bar, 0
        self.total = max(1, round(stream.duration_s))
        self.task = bar.add_task(description, total=self.total, rate="")

    def __iter__(self) -> Iterator[np.ndarray]:
        sr = self.stream.sample_rate
        for block in self.stream:
            self.samples += len(block)
            self.bar.update(self.task, completed=min(self.samples / sr, self.total),
                            rate=f"{self.samples / sr:,.0f} s read")
            yield block
        self.bar.update(self.task, completed=self.total)


def _score_segments(predictor: Predictor, stream: _Counted, segments: list[tuple[int, int]],
                    batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of calibrated window probabilities and window count per segment, streaming the audio
    once and holding only the samples that pending windows still need."""
    clip = predictor.clip_samples
    windows = [(k, s + o, min(s + o + clip, e)) for k, (s, e) in enumerate(segments)
               for o in window_starts(e - s, clip, clip // 2)]
    sums = np.zeros((len(segments), len(predictor.labels)), np.float64)
    counts = np.zeros(len(segments), np.int64)
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        rows = np.zeros((len(batch), clip), np.float32)
        lengths = np.zeros(len(batch), np.int64)
        for i, (_, w) in enumerate(batch):
            rows[i, :len(w)] = w
            lengths[i] = len(w)
        probs = softmax(predictor.logits_windows(rows, lengths, batch_size) / predictor.temperature)
        for (k, _), p in zip(batch, probs):
            sums[k] += p
            counts[k] += 1
        batch.clear()

    buf, buf_start, nxt = np.zeros(0, np.float32), 0, 0
    for block in stream:
        buf = np.concatenate([buf, block]) if len(buf) else np.asarray(block, np.float32)
        buf_end = buf_start + len(buf)
        while nxt < len(windows) and windows[nxt][2] <= buf_end:
            k, a, b = windows[nxt]
            batch.append((k, buf[a - buf_start:b - buf_start].copy()))
            nxt += 1
            if len(batch) >= batch_size:
                flush()
        keep_from = min(windows[nxt][1], buf_end) if nxt < len(windows) else buf_end
        if keep_from > buf_start:
            buf = buf[keep_from - buf_start:]
            buf_start = keep_from
    flush()
    return sums, counts

"""Voice-activity detection: where the speech is in a clip or a recording.

Two detectors give a speech score per 32 ms frame (512 samples at 16 kHz):

- ``silero``: Silero VAD v6 (MIT licence, Silero Team), its batched "sequence" ONNX model run by
  onnxruntime, the LSTM state carried across blocks. The model file ships inside serkit
  (``serkit/assets/silero/``, 1.2 MB, copied from the ``silero-vad`` 6.2.3 package with its
  licence), so speech detection needs neither torch nor the ``silero-vad`` package. It detects
  human speech: pure tones and noise are not speech to it.
- ``energy``: a fallback without onnxruntime. A frame is speech when its level is above
  ``max(-50 dBFS, min(floor + 15 dB, peak - 10 dB))``, where floor and peak are the 10th and
  99th percentiles of the recording's frame levels. It cannot tell speech from other loud sound.
- ``auto``: silero when onnxruntime is installed, else energy.

:func:`speech_segments` turns frame scores into speech segments (hysteresis, bridged pauses,
minimum length, padding); :func:`detect_speech` does both for a clip held in memory, and
:func:`clip_speech` gives a clip in which silero finds no speech a second look.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from serkit.config import VADS

FRAME = 512            # VAD frame: 32 ms at 16 kHz (Silero's frame size)
ENERGY_FLOOR_DB = -50.0
ENERGY_MARGIN_DB = 15.0       # speech: this far above the noise floor (10th percentile)...
ENERGY_PEAK_MARGIN_DB = 10.0  # ...or, in recordings that are mostly loud, within this of the peak
SILERO_MODEL = Path(__file__).parent / "assets" / "silero" / "silero_vad_16k_sequence.onnx"


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
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"--vad silero needs onnxruntime: pip install onnxruntime (or use --vad energy) ({exc})") from None
        self.session = _silero_session(str(SILERO_MODEL))
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
    """The detector named ``vad`` (``auto``: silero when onnxruntime is installed, else energy;
    ``none``: None, no detection)."""
    if vad not in VADS:
        raise ValueError(f"unknown --vad {vad!r}; choose {', '.join(VADS)}")
    if vad == "none":
        return None
    if vad == "auto":
        try:
            import onnxruntime  # noqa: F401
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


def fixed_segments(n_samples: int, step: int, min_samples: int) -> list[tuple[int, int]]:
    """Consecutive ``step``-sample segments covering ``n_samples``; a last one shorter than
    ``min_samples`` joins the one before it (never a segment of a few samples scored alone)."""
    segments = [(s, min(s + step, n_samples)) for s in range(0, n_samples, step)]
    if len(segments) > 1 and segments[-1][1] - segments[-1][0] < min_samples:
        segments[-2:] = [(segments[-2][0], segments[-1][1])]
    return segments


#: A clip in which silero finds no speech gets a second look: with this much silence before it,
#: at this lower threshold (see :func:`clip_speech`).
SECOND_LOOK_PAD_S = 0.5
SECOND_LOOK_THRESHOLD = 0.35


def clip_speech(wave: np.ndarray, sample_rate: int, vad: str = "auto", pad_s: float = SECOND_LOOK_PAD_S,
                threshold: float = SECOND_LOOK_THRESHOLD) -> list[tuple[int, int]]:
    """Speech in one clip a user gives as an utterance: :func:`detect_speech`, and when silero
    finds none, a second look at the clip after ``pad_s`` of silence, at ``threshold`` (segments
    mapped back into the clip; the defaults are the scorer's).

    Silero hears speech begin after silence: a clip cut at its first syllable (ASED's 2 s clips,
    a voice note trimmed tight), or heard in a reverberant room, can pass without it being sure
    of any speech (warming its state on the clip itself does not help; the silence does).
    ``python benchmarks/vad_second_look.py``: on the pool 109 of 7,118 clips (95 of ASED's 1,974)
    had no speech at silero's own threshold, 17 after the second look; in test rooms over babble
    141 of 3,000, then 15. Noise, tones and chords stay "no speech" (1 of 60 click tracks passes);
    music-like sounds (synthetic pitch sweeps, chord changes) pass for speech more often (8 and
    24 of 60, against 1 and 3). Clips with speech at the first look are untouched, and so is a long recording's
    timeline (its speech rarely starts at its first sample)."""
    segments = detect_speech(wave, sample_rate, vad)
    if segments or not len(wave) or vad_name(vad) != "silero":
        return segments
    pad = int(pad_s * sample_rate)
    found = detect_speech(np.pad(np.asarray(wave, np.float32), (pad, 0)), sample_rate, "silero", threshold=threshold)
    inside = [(max(0, s - pad), e - pad) for s, e in found]
    return [(s, e) for s, e in inside if e > s]


def vad_name(vad: str) -> str:
    """The detector ``vad`` stands for: ``auto`` resolves to silero or energy."""
    detector = make_vad(vad)
    return "none" if detector is None else detector.name


def detect_speech(wave: np.ndarray, sample_rate: int, vad: str = "auto", **options: float) -> list[tuple[int, int]]:
    """[start, end) sample ranges of speech in a clip held in memory (``options``: those of
    :func:`speech_segments`)."""
    detector = make_vad(vad)
    if detector is None:
        return [(0, len(wave))] if len(wave) else []
    detector.reset()
    scores = [detector(f) for f in frames_of(iter([np.asarray(wave, np.float32)]))]
    if not scores:
        return []
    return speech_segments(detector.finish(np.concatenate(scores)), len(wave), sample_rate, FRAME, **options)

"""The one path from waveform to answer. Torch-free: a model is a *runtime* with ``logits``.

Every figure serkit publishes and every answer it gives (evaluate, temperature fitting,
predict, web, batch, Ray, timelines, ONNX) goes through :class:`Scorer`::

    waveform  1-D float32 at spec.sample_rate
      -> checks: finite samples within +-1000 (else AudioError); shorter than MIN_SECONDS or digitally
         silent: "no speech"
      -> speech segments (serkit.vad, silero by default; a clip where silero hears none gets a
         second look, after 0.5 s of silence at a lower threshold); none found: "no speech"
      -> scoring units: when the speech (first start to last end, pauses included) fits one
         window it is one unit; otherwise each speech segment (split at ``max_segment_s``) is one
      -> each unit cut into windows of spec.window_samples with spec.overlap (one window,
         zero-padded with its valid length, when it is shorter)
      -> runtime.logits(windows, lengths)                    (windows, classes), uncalibrated
      -> per unit: the MEAN OF ITS WINDOWS' LOGITS           (AGGREGATION = "mean_logits")
      -> softmax(logits / temperature)                       calibrated probabilities
      -> headline: the one unit's probabilities, or the duration-weighted mean of the units'
      -> uncertain: top probability below ``uncertain_below`` (0.5: with calibrated
         probabilities, an answer more likely wrong than right) or within ``uncertain_margin``
         (0.1) of the runner-up

:meth:`Scorer.logits` and :meth:`Scorer.proba` score audio AS GIVEN (no speech detection, the
same windows and aggregation): what the timeline uses for its segments and what a caller who
has already cut speech wants. :meth:`Scorer.analyse` is the user-facing path above.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serkit.audio import MIN_SECONDS, AudioError, AudioSpec, check_samples  # noqa: F401  (MIN_SECONDS re-exported)
from serkit.vad import VADS, clip_speech, fixed_segments, split_long, vad_name

AGGREGATION = "mean_logits"
SILENCE_DBFS = -60.0      # no sample above this (the peak): digital silence. A peak, not an RMS level: a
                          # soft sentence after a second of silence has a whole-clip RMS under -60 dBFS
UNCERTAIN_BELOW = 0.5
UNCERTAIN_MARGIN = 0.1
MAX_SEGMENT_S = 10.0

NO_SPEECH = "no speech detected"


class Runtime(Protocol):
    """What runs a model: windows (n, window_samples) float32 + valid lengths (n,) int64 ->
    uncalibrated logits (n, classes) float32."""

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    z = np.asarray(x, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def calibrate(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities (float32): ``softmax(logits / temperature)``."""
    return softmax(np.asarray(logits) / temperature).astype(np.float32)


def mean_by(rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """The mean of the rows of each of ``n`` owners (float32): how a unit's window logits become
    its logits (:data:`AGGREGATION`)."""
    sums = np.zeros((n, rows.shape[1]), np.float64)
    np.add.at(sums, owner, rows)
    return (sums / np.bincount(owner, minlength=n)[:, None]).astype(np.float32)


def clip_probabilities(unit_logits: np.ndarray, units: Sequence[Sequence[tuple[int, int]]],
                       temperature: float = 1.0) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Calibrated probabilities of each unit (``unit_logits``: one row per unit, clip after clip)
    and each clip's headline: its one unit's probabilities, or the mean of its units' weighted
    by their durations; None for a clip without units (no speech)."""
    probs = calibrate(unit_logits, temperature)
    heads: list[np.ndarray | None] = []
    i = 0
    for clip in units:
        p = probs[i:i + len(clip)]
        if not len(clip):
            heads.append(None)
        elif len(clip) == 1:
            heads.append(p[0])
        else:
            dur = np.array([e - s for s, e in clip], np.float64)
            heads.append(((p * dur[:, None]).sum(0) / dur.sum()).astype(np.float32))
        i += len(clip)
    return probs, heads


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of windows covering ``n_samples``; the last window ends at the clip's end."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def too_little(n_samples: int, peak: float, sample_rate: int, what: str = "clip") -> str | None:
    """Why audio of ``n_samples`` whose largest absolute sample is ``peak`` has nothing to score
    (shorter than :data:`MIN_SECONDS`, or no sample above :data:`SILENCE_DBFS`: digital silence),
    or None: the one rule of every entry point, timelines included."""
    if n_samples < MIN_SECONDS * sample_rate:
        return f"{NO_SPEECH}: the {what} is {n_samples / sample_rate:.2f} s long, shorter than {MIN_SECONDS} s"
    if peak <= 10 ** (SILENCE_DBFS / 20):
        return f"{NO_SPEECH}: the {what} is silent (no sample above {SILENCE_DBFS:.0f} dBFS)"
    return None


def peak(wave: np.ndarray) -> float:
    return float(np.abs(wave).max()) if len(wave) else 0.0


def sounding(pieces: Sequence[tuple[int, int]], peaks: Sequence[float], sample_rate: int) -> list[tuple[int, int]]:
    """The fixed pieces (``vad="none"``) that :func:`too_little` lets through, given each piece's
    peak: a piece of digital silence is left out, as a clip of it is answered "no speech"."""
    return [(s, e) for (s, e), q in zip(pieces, peaks) if too_little(e - s, q, sample_rate) is None]


@dataclass
class Analysis:
    """What the scorer found in one clip. ``probabilities`` is None when there is no speech
    (``reason`` says why); ``segments`` are [start, end) samples of the scoring units with their
    calibrated probabilities in ``segment_probabilities``; ``vad`` names the detector that ran."""

    n_samples: int
    probabilities: np.ndarray | None = None
    segments: list[tuple[int, int]] = field(default_factory=list)
    segment_probabilities: np.ndarray | None = None
    uncertain: bool = False
    reason: str | None = None
    vad: str | None = None
    adapted: bool = False     # answered adapted to one voice (serkit.speaker.adapt_analyses)
    voices: list[int] | None = None   # each segment's voice, when told apart (speakers="voice")

    @property
    def speech_samples(self) -> int:
        return sum(e - s for s, e in self.segments)


class Scorer:
    """Turns waveforms into calibrated per-class probabilities; see the module docstring."""

    def __init__(self, runtime: Runtime, labels: Sequence[str], spec: AudioSpec, temperature: float = 1.0, *,
                 vad: str | None = None, uncertain_below: float = UNCERTAIN_BELOW,
                 uncertain_margin: float = UNCERTAIN_MARGIN, max_segment_s: float = MAX_SEGMENT_S):
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, not {temperature}")
        self.runtime, self.labels, self.spec = runtime, list(labels), spec
        self.temperature = float(temperature)
        # a model's bundle names its detector; for one that does not, $SERKIT_VAD or auto (silero)
        self.vad, self.max_segment_s = vad or os.environ.get("SERKIT_VAD") or "auto", max_segment_s
        self.uncertain_below, self.uncertain_margin = uncertain_below, uncertain_margin

    def use_detector(self, vad: str | None = None, max_segment_s: float | None = None) -> None:
        """Answer with the speech detector ``vad`` and segment limit ``max_segment_s`` instead of
        the model's own (None: keep it); ``serkit predict --vad/--max-segment``, Ray's actors."""
        if vad is not None and vad not in VADS:
            raise ValueError(f"unknown vad {vad!r}; choose {', '.join(VADS)}")
        if max_segment_s is not None and not max_segment_s > 0:
            raise ValueError(f"max_segment_s must be positive, not {max_segment_s}")
        self.vad = vad or self.vad
        self.max_segment_s = max_segment_s or self.max_segment_s

    # -- audio as given ------------------------------------------------------------------------
    def window_logits(self, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits (n, classes) of windows (n, window_samples) with valid ``lengths``;
        non-finite model output is an error, never an answer."""
        out = [self.runtime.logits(np.ascontiguousarray(windows[i:i + batch_size], np.float32),
                                   np.ascontiguousarray(lengths[i:i + batch_size], np.int64))
               for i in range(0, len(windows), batch_size)]
        logits = np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.labels)), np.float32)
        if logits.shape[1:] != (len(self.labels),):
            raise ValueError(f"the model gives {logits.shape[1:]} outputs for {len(self.labels)} labels")
        if not np.isfinite(logits).all():
            raise AudioError("the model's output is not finite for this audio (is its level absurd?)")
        return logits

    def cut(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every clip's windows (n, window_samples), their valid lengths (n,) and owning clip (n,)."""
        window, hop = self.spec.window_samples, self.spec.hop_samples
        starts = [window_starts(len(w), window, hop) for w in waves]
        n = sum(map(len, starts))
        rows = np.zeros((n, window), np.float32)
        lengths = np.zeros(n, np.int64)
        owner = np.zeros(n, np.int64)
        i = 0
        for k, (wave, ss) in enumerate(zip(waves, starts)):
            for s in ss:
                seg = wave[s:s + window]
                rows[i, :len(seg)], lengths[i], owner[i] = seg, len(seg), k
                i += 1
        return rows, lengths, owner

    def logits(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits per clip (n, classes): the mean of each clip's window logits."""
        if not len(waves):
            return np.zeros((0, len(self.labels)), np.float32)
        for w in waves:
            if len(w) == 0:
                raise AudioError("cannot score an empty clip")
            check_samples(w, "the audio")
        rows, lengths, owner = self.cut(waves)
        return mean_by(self.window_logits(rows, lengths, batch_size), owner, len(waves))

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float32) of uncalibrated logits."""
        return calibrate(logits, self.temperature)

    def proba(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities (n, classes) of clips as given (no speech detection)."""
        return self.calibrate(self.logits(waves, batch_size))

    # -- speech first ----------------------------------------------------------------------------
    def units(self, wave: np.ndarray, vad: str | None = None) -> tuple[list[tuple[int, int]], str | None]:
        """The scoring units of a clip ([start, end) samples), or [] and the reason there are none
        (``vad``: a detector for this call instead of the scorer's)."""
        vad = vad or self.vad
        check_samples(wave, "the audio")     # NaN/inf or absurd amplitude: an error, not an answer
        sr = self.spec.sample_rate
        reason = too_little(len(wave), peak(wave), sr)
        if reason:
            return [], reason
        if vad == "none":    # no detection: the clip in consecutive pieces of one window, but not its silent ones
            pieces = fixed_segments(len(wave), self.spec.window_samples, int(MIN_SECONDS * sr))
            return sounding(pieces, [peak(wave[s:e]) for s, e in pieces], sr), None
        segments = clip_speech(wave, sr, vad)
        if not segments:
            return [], f"{NO_SPEECH} (voice-activity detector: {vad_name(vad)})"
        span = (segments[0][0], segments[-1][1])
        if span[1] - span[0] <= self.spec.window_samples:
            return [span], None
        return split_long(segments, int(self.max_segment_s * sr)), None

    def speech_window(self, wave: np.ndarray) -> tuple[int, int]:
        """[start, end) of the samples a model should learn from for this clip: its one scoring
        unit, or (for clips whose speech is longer than a window, or has none) the centre window
        of the speech span, or of the clip."""
        return self.window_of(self.units(np.asarray(wave, np.float32))[0], len(wave))

    def window_of(self, units: list[tuple[int, int]], n: int) -> tuple[int, int]:
        """:meth:`speech_window` of a clip of ``n`` samples whose :meth:`units` are known (the
        detector is not run again)."""
        start, end = (units[0][0], units[-1][1]) if units else (0, n)
        window = self.spec.window_samples
        if end - start > window:
            start += (end - start - window) // 2
            end = start + window
        return start, end

    def analyse(self, waves: Sequence[np.ndarray], batch_size: int = 64, vad: str | None = None) -> list[Analysis]:
        """Speech-first analysis of each clip (see the module docstring), all clips' units
        scored in shared batches. Raises AudioError for non-finite audio."""
        found = [self.units(np.asarray(w, np.float32), vad) for w in waves]
        pieces = [w[s:e] for w, (units, _) in zip(waves, found) for s, e in units]
        probs, heads = clip_probabilities(self.logits(pieces, batch_size), [u for u, _ in found], self.temperature)
        detector = vad_name(vad or self.vad)
        out, i = [], 0
        for w, (units, reason), head in zip(waves, found, heads):
            a = Analysis(n_samples=len(w), segments=units, reason=reason, vad=detector)
            if units:
                a.segment_probabilities, a.probabilities = probs[i:i + len(units)], head
                a.uncertain = self.is_uncertain(head)
                i += len(units)
            out.append(a)
        return out

    def as_logits(self, analyses: Sequence[Analysis]) -> tuple[np.ndarray, np.ndarray]:
        """Logits that reproduce each analysis's probabilities exactly under this temperature
        (``T * log p``: softmax(that / T) = p), and a mask of the clips with no speech (their rows
        are zeros). For a clip scored as one unit they equal its window-mean logits up to a
        per-row constant, so the temperature fitted on them is the usual one."""
        n = len(self.labels)
        logits = np.zeros((len(analyses), n), np.float32)
        none = np.array([a.probabilities is None for a in analyses], bool)
        for i, a in enumerate(analyses):
            if a.probabilities is not None:
                logits[i] = self.temperature * np.log(np.maximum(a.probabilities, 1e-30))
        return logits, none

    def is_uncertain(self, probs: np.ndarray) -> bool:
        return bool(uncertain(probs, self.uncertain_below, self.uncertain_margin)[0])


def uncertain(probs: np.ndarray, below: float = UNCERTAIN_BELOW, margin: float = UNCERTAIN_MARGIN) -> np.ndarray:
    """Which answers are flagged uncertain (one bool per row of ``probs``, (n, classes) or one
    (classes,) vector): the top probability under ``below``, or within ``margin`` of the runner-up."""
    top = -np.sort(-np.atleast_2d(probs), axis=1)
    flag = top[:, 0] < below
    if top.shape[1] > 1:
        flag |= top[:, 0] - top[:, 1] < margin
    return flag

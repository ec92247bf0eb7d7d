"""Emotions over time in long recordings, streamed through in bounded memory.

    serkit predict --timeline call.wav [--vad auto|silero|energy|none] [-o timeline.json|.csv] [--plot t.png]
    predictor.predict_timeline("call.wav")          # the same from Python

Two passes over the audio, each reading it block by block (:class:`serkit.audio.AudioStream`: the
decoder of :func:`serkit.audio.load_audio`, soxr's streaming resampler bit-identical to resampling
the whole file at once), so memory does not grow with the recording's length:

1. Voice-activity detection gives a speech score per 32 ms frame (512 samples at 16 kHz) and
   from those, speech segments: frames above ``threshold`` start speech, speech goes on while
   frames stay above ``threshold - 0.15``, pauses shorter than ``min_silence_ms`` are bridged,
   segments shorter than ``min_speech_ms`` dropped, ``speech_pad_ms`` added at both ends, and
   segments longer than ``max_segment_s`` split into equal parts.
2. Each segment is scored like a clip by the Predictor: one window if it is shorter than the
   model's window, otherwise windows with 50 % overlap whose probabilities are averaged. So a
   segment's probabilities equal ``predictor.predict_proba([segment])``.

Detectors (``vad``: ``silero``, ``energy``, ``auto``) are those of :mod:`serkit.vad`; ``none``
means no detection: consecutive fixed segments of ``segment_s`` seconds (default: the model's
window).
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serkit.audio import AudioStream
import serkit.display as display
from serkit.display import PROB_DECIMALS, progress_bar
from serkit.safety import atomic_file, atomic_write_text, first_line, to_json
from serkit.scorer import MIN_SECONDS, sounding, too_little, window_starts
from serkit.vad import FRAME, fixed_segments, frames_of, make_vad, speech_segments, split_long

if TYPE_CHECKING:   # the Predictor calls this module; it is only a type here
    from serkit.inference import Predictor



# --------------------------------------------------------------------------------- timeline

@dataclass
class Segment:
    start: float                      # seconds
    end: float
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    windows: int                      # model windows averaged for this segment
    uncertain: bool = False           # flagged as the scorer flags a clip (serkit.scorer.uncertain)
    voice: int | None = None          # speakers="voice": which voice the segment is (0, 1, … by first appearance)


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
    reason: str | None = None         # why nothing was scored (a recording too short or silent)
    voices: bool = False              # segments carry the voice they were told apart as (speakers="voice")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in :mod:`serkit.display`'s convention (probabilities 4 decimals, seconds 3);
        ``reason`` says why nothing was scored (None when segments were looked for)."""
        return {"file": self.file, "duration_s": display.seconds(self.duration_s), "vad": self.vad,
                "labels": self.labels,
                "segments": [{**self._fields(s), "confidence": display.prob(s.confidence),
                              "probabilities": display.probs(s.probabilities)}
                             for s in self.segments], "reason": self.reason}

    def _fields(self, s: Segment) -> dict[str, Any]:
        d = asdict(s)
        if not self.voices:
            del d["voice"]
        return d

    def csv_rows(self) -> list[list[Any]]:
        return [[self.file, f"{s.start:.3f}", f"{s.end:.3f}", s.emotion, f"{s.confidence:.4f}",
                 "yes" if s.uncertain else "no", *([s.voice] if self.voices else []),
                 *[f"{s.probabilities[l]:.4f}" for l in self.labels], s.windows]
                for s in self.segments]

    def csv_header(self) -> list[str]:
        return ["file", "start", "end", "emotion", "confidence", "uncertain", *(["voice"] if self.voices else []),
                *self.labels, "windows"]

    def plot(self, path: str | os.PathLike) -> Path:
        """A PNG: each emotion's probability per segment over time, and the speech score below."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        minutes = self.duration_s > 600
        unit, scale = ("min", 60.0) if minutes else ("s", 1.0)
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, layout="constrained",
                                          gridspec_kw={"height_ratios": [4, 1]})
        color = {label: display.emotion_color(label, k) for k, label in enumerate(self.labels)}  # as the web page
        for k, label in enumerate(self.labels):
            xs, ys = [], []
            for s in self.segments:
                xs += [s.start / scale, s.end / scale, np.nan]
                ys += [s.probabilities[label]] * 2 + [np.nan]
            top.plot(xs, ys, color=color[label], lw=2, label=label)
        for s in self.segments:
            top.axvspan(s.start / scale, s.end / scale, color=color[s.emotion], alpha=0.08, lw=0)
        for s in self.segments:
            if (s.end - s.start) > 0.03 * self.duration_s:
                top.text((s.start + s.end) / 2 / scale, 1.04, s.emotion, ha="center", va="bottom", fontsize=8,
                         color=color[s.emotion], clip_on=False)
        top.set(ylim=(-0.02, 1.02), ylabel="probability")
        fig.suptitle(f"{Path(self.file).name}: emotion over time ({len(self.segments)} segments, vad {self.vad})")
        top.legend(loc="upper left", bbox_to_anchor=(1.005, 1), borderaxespad=0, fontsize=8)  # beside the data
        if len(self.speech_prob):
            step = max(1, len(self.speech_prob) // 4000)      # at most ~4000 points drawn
            t = np.arange(0, len(self.speech_prob), step) * self.frame_s / scale
            bottom.plot(t, self.speech_prob[::step], color="0.3", lw=0.8)
        for s in self.segments:
            bottom.axvspan(s.start / scale, s.end / scale, color="tab:green", alpha=0.2, lw=0)
        bottom.set(ylabel="speech", xlabel=f"time ({unit})", xlim=(0, self.duration_s / scale))
        path = Path(path)
        with atomic_file(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110, metadata={"Software": PLOT_SOFTWARE})
        plt.close(fig)
        return path


#: The ``Software`` text of serkit's timeline plots: how serkit knows a PNG it may replace.
PLOT_SOFTWARE = "serkit timeline plot"
TIMELINE_KEYS = frozenset({"file", "duration_s", "vad", "labels", "segments"})


def is_timeline_file(path: str | os.PathLike) -> bool:
    """True for a timeline file serkit wrote (``.json``, ``.csv``) or a timeline plot (``.png``)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        with open(path, "rb") as fh:
            return b"Software\x00" + PLOT_SOFTWARE.encode() in fh.read(4096)
    if path.suffix.lower() == ".csv":
        header = first_line(path).split(",")
        return header[:5] == ["file", "start", "end", "emotion", "confidence"] and header[-1] == "windows"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return all(isinstance(d, dict) and TIMELINE_KEYS <= set(d) <= TIMELINE_KEYS | {"reason"}
               for d in (data if isinstance(data, list) else [data]))


def write_timelines(timelines: list[Timeline], path: str | os.PathLike) -> Path:
    """Write timelines to ``.json`` (one object, or a list for several files) or ``.csv``,
    atomically (callers check first that ``path`` may be written: see :func:`is_timeline_file`)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = timelines[0].to_dict() if len(timelines) == 1 else [t.to_dict() for t in timelines]
        atomic_write_text(path, to_json(data, indent=2) + "\n")
    elif path.suffix.lower() == ".csv":
        atomic_write_text(path, timelines_csv(timelines))
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
                     batch_size: int = 32, block_seconds: float = 20.0, progress: bool = False,
                     same_speaker: bool = False, speakers: str = "one") -> Timeline:
    """The emotion timeline of a recording (a path, or a 1-D waveform at the model's rate).

    Memory stays bounded by the block size, the model's batch and one score per 32 ms frame
    (450 KB per hour), whatever the length of the recording. ``same_speaker``: the recording is
    one voice; its segments' answers adapt to it as
    :meth:`~serkit.inference.Predictor.predict_same_speaker` adapts clips (:mod:`serkit.speaker`).
    ``speakers="voice"`` (with ``same_speaker``): the recording may hold several voices (a call);
    each segment's voice is embedded (:mod:`serkit.voices`, from its windows), the segments are
    clustered into voices (``Segment.voice``) and each voice's segments adapt to it.
    """
    if speakers not in ("one", "voice"):
        raise ValueError(f"speakers {speakers!r}: a timeline is one voice (one) or the voices told apart (voice)")
    if speakers == "voice" and not same_speaker:
        raise ValueError("speakers='voice' tells the voices apart to adapt to each: add same_speaker")
    if speakers == "voice":
        from serkit.voices import clustering
        clustering()
    if same_speaker:
        predictor.check_can_adapt()
    if segment_s is not None and vad != "none":
        raise ValueError(f"--segment-seconds sets the fixed pieces of --vad none; with --vad {vad} the "
                         "detector's stretches of speech are scored (split at --max-segment): add --vad none")
    sr = predictor.sample_rate
    stream = AudioStream(source, sr, block_seconds)
    detector = None if vad == "none" else make_vad(vad)
    if segment_s is not None and not segment_s >= MIN_SECONDS:     # a shorter piece can only be "no speech"
        raise ValueError(f"--segment-seconds must be at least {MIN_SECONDS}, not {segment_s}")
    if max_segment_s <= 0:
        raise ValueError(f"--max-segment must be positive, not {max_segment_s}")
    step = int(round((segment_s or predictor.clip_samples / sr) * sr))      # the fixed pieces' length
    with progress_bar(progress) as bar:
        # pass 1: score frames for speech (or only count the samples and each piece's peak)
        reader = _Counted(stream, bar, "speech detection (s)" if detector else "reading (s)", None if detector else step)
        scores = [detector(frames) for frames in frames_of(iter(reader))] if detector else [len(b) for b in reader]
        n_samples = reader.samples
        speech = detector.finish(np.concatenate(scores)) if detector and scores else np.zeros(0, np.float32)
        # the scorer's rule for every entry point: nothing is scored in too little audio or silence
        reason = reader.no_speech(sr)
        if reason:
            segments = []
        elif detector is not None:
            segments = split_long(speech_segments(speech, n_samples, sr, FRAME, threshold, min_speech_ms,
                                                  min_silence_ms, speech_pad_ms), int(max_segment_s * sr))
        else:               # pieces of digital silence are left out, as the scorer leaves them out of a clip
            pieces = fixed_segments(n_samples, step, int(MIN_SECONDS * sr))
            segments = sounding(pieces, [reader.pieces[s // step:(e - 1) // step + 1].max() for s, e in pieces], sr)
        segments = [(s, e) for s, e in segments if e > s]
        # pass 2: score each segment's windows
        sums, counts, voice, heard = _score_segments(predictor, _Counted(stream, bar, "emotion (s)"), segments,
                                                     batch_size, same_speaker, speakers == "voice",
                                                     pieces=detector is None)
    labels = predictor.labels
    logits = sums / np.maximum(counts, 1)[:, None]
    who = np.zeros(len(segments), np.int64)
    if heard is not None and len(segments):
        from serkit.voices import unit_voices
        who = unit_voices(heard)
    if voice is not None:          # as for clips: a voice of one stretch of speech is answered as it is
        from serkit.speaker import adapt_voices
        logits = adapt_voices(logits, voice / np.maximum(counts, 1)[:, None], who,
                              predictor.runtime.head.speaker.table)[0]
    probs = predictor.scorer.calibrate(logits) if len(segments) else sums
    out = []
    for (s, e), mean, n, w in zip(segments, probs, counts, who):
        best = int(np.argmax(mean))
        out.append(Segment(start=round(s / sr, 3), end=round(e / sr, 3), emotion=labels[best],
                           confidence=round(float(mean[best]), PROB_DECIMALS),
                           probabilities={l: round(float(v), PROB_DECIMALS) for l, v in zip(labels, mean)}, windows=int(n),
                           uncertain=predictor.scorer.is_uncertain(mean),
                           voice=int(w) if heard is not None else None))
    return Timeline(file=stream.name, duration_s=n_samples / sr, labels=labels,
                    vad=detector.name if detector else "none", segments=out, frame_s=FRAME / sr,
                    speech_prob=speech.astype(np.float32), reason=reason, voices=heard is not None)


class _Counted:
    """One pass over the stream that counts samples and their peak (with ``step``, also the peak
    of each ``step``-sample piece: ``pieces``) and advances a progress-bar task (seconds)."""

    def __init__(self, stream: AudioStream, bar, description: str, step: int | None = None):
        self.stream, self.bar, self.samples, self.peak = stream, bar, 0, 0.0
        self.step, self.pieces = step, np.zeros(0, np.float64)
        self.total = max(1, round(stream.duration_s))
        self.task = bar.add_task(description, total=self.total, rate="")

    def __iter__(self) -> Iterator[np.ndarray]:
        sr = self.stream.sample_rate
        for block in self.stream:
            size = np.abs(block)
            if self.step and len(block):
                first, last = self.samples // self.step, (self.samples + len(block) - 1) // self.step
                cuts = np.arange(first, last + 1) * self.step - self.samples     # where each piece starts
                cuts[0] = 0
                self.pieces = np.pad(self.pieces, (0, max(0, last + 1 - len(self.pieces))))
                self.pieces[first:last + 1] = np.maximum(self.pieces[first:last + 1], np.maximum.reduceat(size, cuts))
            self.samples += len(block)
            self.peak = max(self.peak, float(size.max()) if len(block) else 0.0)
            self.bar.update(self.task, completed=min(self.samples / sr, self.total),
                            rate=f"{self.samples / sr:,.0f} s read")
            yield block
        self.bar.update(self.task, completed=self.total)

    def no_speech(self, sample_rate: int) -> str | None:
        """After a pass: why the recording has nothing to score (the scorer's rule), or None."""
        return too_little(self.samples, self.peak, sample_rate, "recording")


def _score_segments(predictor: Predictor, stream: _Counted, segments: list[tuple[int, int]], batch_size: int,
                    speaker: bool = False, voices: bool = False, pieces: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Sum of window logits and window count per segment (the scorer's aggregation: their mean),
    with ``speaker`` the sum of the speaker head's window logits (else None), and with ``voices``
    the sum of the windows' voice embeddings (:func:`serkit.voices.add_windows`, of their speech
    only when the segments are fixed ``pieces``; else None), streaming the audio once and holding
    only the samples that pending windows still need."""
    from serkit.speaker import SpeakerLogits
    from serkit.voices import add_windows
    scorer = predictor.scorer
    if speaker:                      # the model's logits, and its speaker head's from the same pass
        both = SpeakerLogits(predictor.runtime)
        scorer = both.scoring(scorer)
    clip, hop = predictor.clip_samples, predictor.spec.hop_samples
    windows = [(k, s + o, min(s + o + clip, e)) for k, (s, e) in enumerate(segments)
               for o in window_starts(e - s, clip, hop)]
    sums = np.zeros((len(segments), len(predictor.labels)), np.float64)
    counts = np.zeros(len(segments), np.int64)
    voice = np.zeros_like(sums) if speaker else None
    heard = np.zeros((len(segments), 256), np.float64) if voices else None
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        rows = np.zeros((len(batch), clip), np.float32)
        lengths = np.zeros(len(batch), np.int64)
        for i, (_, w) in enumerate(batch):
            rows[i, :len(w)] = w
            lengths[i] = len(w)
        logits = scorer.window_logits(rows, lengths, batch_size)
        for (k, _), p in zip(batch, logits):
            sums[k] += p
            counts[k] += 1
        if heard is not None:
            add_windows(heard, rows, lengths, [k for k, _ in batch], speech_only=pieces)
        if voice is not None:
            for (k, _), u in zip(batch, np.concatenate(both.rows)):
                voice[k] += u
            both.rows.clear()
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
    return sums, counts, voice, heard

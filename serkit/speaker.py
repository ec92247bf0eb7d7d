"""Adapting a linear head to one speaker from several of their clips, without labels.

A head on frozen encoder features hears the voice as well as the emotion: each speaker's clips
sit at an offset of their own. Given clips said to be one voice, the offset is estimated class by
class: each clip less the training mean of the emotion the plain head answers for it, averaged
over the clips. A batch that is mostly angry is then compared with the training speakers' angry
clips, not with their average (centring a batch on its own mean takes its dominant emotion for the
voice). A second head, trained on speaker-centred features, reads the clips less that offset.

Both heads are linear, so the correction happens on logits (:func:`adapt`): an encoder-head
bundle carries the second head's weights and its C x C :attr:`SpeakerHead.table` (fitted with the
head, :mod:`serkit.encoder_training`), the runtime gives both heads' logits from one encoder pass,
and :meth:`serkit.inference.Predictor.predict_same_speaker` (``serkit predict --same-speaker``)
adapts. Measured (``benchmarks/head_variants.py --only offset``, RESULTS-default.md): +2.3 to +2.7
points of UAR on batches of 12 clips of one held-out speaker, from 30 % to 100 % one emotion.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serkit.scorer import mean_by

if TYPE_CHECKING:
    from serkit.scorer import Analysis, Scorer


#: Stretches of speech (a short clip is one) from which adapting to a voice starts to help:
#: measured on held-out speakers, +1.5 points of UAR with 8 clips, nothing with 4 (RESULTS-default.md).
HELPS_FROM = 8


def voices_note(heard: list[int]) -> str | None:
    """What to tell a user about voices too small to adapt, given each voice's number of
    stretches of speech (:func:`units_heard`; a short clip is one): under 2 they are answered as
    they are, under :data:`HELPS_FROM` adapting gains little; None when every voice has enough."""
    alone = sum(1 for n in heard if n < 2)
    few = sum(1 for n in heard if 2 <= n < HELPS_FROM)
    parts = ([f"{alone} of {len(heard)} voice(s) had fewer than 2 stretches of speech: answered as they are, "
              "not adapted"] if alone else [])
    parts += ([f"{few} of {len(heard)} voice(s) had fewer than {HELPS_FROM} stretches of speech, where adapting "
               "starts to help (measured: nothing with 4 clips)"] if few else [])
    return "; ".join(parts) or None


@dataclass
class SpeakerHead:
    """A linear head on speaker-centred features, and its logits of each class's centred mean."""

    weight: np.ndarray   # (classes, features)
    bias: np.ndarray     # (classes,)
    table: np.ndarray    # (classes, classes): row c is the head's logits of class c's centred mean

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias


def centred(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Each row less the mean of its speaker's rows."""
    out = np.empty_like(x)
    for s in np.unique(speakers):
        rows = speakers == s
        out[rows] = x[rows] - x[rows].mean(0)
    return out


def fit_speaker_head(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, c: float,
                     sample_weight: np.ndarray | None = None, max_iter: int = 1000) -> SpeakerHead:
    """An L2 logistic regression at inverse regularisation ``c`` on the training rows ``x``
    centred per speaker and standardised (the standardisation folded into the weights, so the
    head reads centred features as they are), its loss weighted by ``sample_weight``; with the
    table of its logits of each class's weighted centred mean. Classes are ``sorted(set(y))``."""
    from sklearn.linear_model import LogisticRegression

    g = centred(np.asarray(x, np.float64), np.asarray(speakers))
    mean, std = g.mean(0), g.std(0)
    std = np.where(std > 0, std, 1.0)
    clf = LogisticRegression(C=c, max_iter=max_iter).fit((g - mean) / std, y, sample_weight=sample_weight)
    weight = clf.coef_ / std
    bias = clf.intercept_ - weight @ mean
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    means = np.stack([np.average(g[y == k], axis=0, weights=w[y == k]) for k in clf.classes_])
    return SpeakerHead(weight, bias, means @ weight.T + bias)


def adapt(plain_logits: np.ndarray, speaker_logits: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Logits of clips of one speaker after removing the speaker's offset, estimated class by class.

    ``plain_logits`` (clips, classes) give each clip's answer a; ``speaker_logits`` are the
    speaker head's logits u of the clips as they are. The offset o = mean_i(x_i - m[a_i]) (m the
    centred class means) read by the linear head W is W o = mean(u) - mean(table[a]), so the
    adapted logits are u_i - mean(u) + mean(table[a])."""
    answers = np.asarray(plain_logits).argmax(1)
    u = np.asarray(speaker_logits)
    return u - u.mean(0) + table[answers].mean(0)


class SpeakerLogits:
    """A runtime that answers with its model's logits and keeps its speaker head's, window by
    window, for :meth:`serkit.inference.Predictor.predict_same_speaker` and same-speaker timelines
    (one encoder pass for both)."""

    def __init__(self, runtime):   # an EncoderHeadRuntime
        self.runtime, self.rows = runtime, []

    def scoring(self, scorer: Scorer) -> Scorer:
        """A copy of ``scorer`` that scores through this runtime (everything else as it is)."""
        import copy

        twin = copy.copy(scorer)
        twin.runtime = self
        return twin

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        plain, speaker = self.runtime.logits_and_speaker(windows, lengths)
        self.rows.append(speaker)
        return plain

    def of_units(self, scorer: Scorer, wave: np.ndarray, analysis: Analysis) -> np.ndarray:
        """The speaker logits of each of the clip's units, from the rows kept since the last call
        (the clip scored through this runtime, alone): the mean of each unit's windows, as the
        scorer aggregates its logits. The rows are then cleared for the next clip."""
        pieces = [wave[s:e] for s, e in analysis.segments]
        units = mean_by(np.concatenate(self.rows), scorer.cut(pieces)[2], len(pieces))
        self.rows.clear()
        return units


def units_heard(analysis) -> int:
    """The units (stretches of speech) of one clip's analysis that adaptation reads: 0 for a clip
    without speech, or an item that is not an analysis (an error, a clip not decoded)."""
    return len(analysis.segments) if getattr(analysis, "probabilities", None) is not None else 0


def adapt_voices(plain_logits: np.ndarray, speaker_logits: np.ndarray, who: np.ndarray,
                 table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`adapt` of each voice's units (``who``: a voice label per unit): the logits with every
    unit of a voice of two units or more replaced by its adapted logits, and which units those are
    (a voice of one unit has nothing to compare with and keeps its plain logits)."""
    out, done = np.array(plain_logits, np.float64, copy=True), np.zeros(len(who), bool)
    for v in np.unique(who):
        g = np.flatnonzero(who == v)
        if len(g) > 1:
            out[g], done[g] = adapt(out[g], np.asarray(speaker_logits)[g], table), True
    return out, done


def adapt_analyses(heard: list[tuple[Analysis, np.ndarray]], table: np.ndarray, scorer: Scorer,
                   voices: np.ndarray | None = None) -> None:
    """Answer analyses of ONE voice adapted to it, in place: the offset is estimated over all their
    units (stretches of speech), each unit is answered less it, and each clip from its units as
    the scorer aggregates (their probabilities weighted by their durations); ``adapted`` is set.
    ``heard``: (analysis with speech, its units' speaker logits from :meth:`SpeakerLogits.of_units`).
    ``voices`` (one label per unit, clip after clip; :func:`serkit.voices.unit_voices`): the units
    are of several voices, each adapted to its own (``Analysis.voices`` says which unit is whose).
    A voice of one unit is answered as it is: one stretch of speech has nothing to compare with."""
    from serkit.scorer import calibrate, clip_probabilities

    if not heard:
        return
    probs = np.concatenate([a.segment_probabilities for a, _ in heard])
    who = np.zeros(len(probs), np.int64) if voices is None else np.asarray(voices)
    # the plain answers are read only for each unit's argmax: log-probabilities serve as logits
    logits, done = adapt_voices(np.log(np.maximum(probs, 1e-30)), np.concatenate([u for _, u in heard]), who, table)
    probs[done] = calibrate(logits[done], scorer.temperature)
    if not done.any() and voices is None:
        return
    probs, heads = clip_probabilities(np.log(np.maximum(probs, 1e-30)), [a.segments for a, _ in heard])
    first = 0
    for (a, _), head in zip(heard, heads):
        n = len(a.segments)
        a.segment_probabilities, a.probabilities = probs[first:first + n], head
        a.uncertain, a.adapted = scorer.is_uncertain(head), bool(done[first:first + n].any())
        if voices is not None:
            a.voices = who[first:first + n].tolist()
        first += n

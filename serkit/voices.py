"""Which clips are one voice when nobody says: speaker embeddings and clustering
(``serkit predict --same-speaker --speakers voice``).

The speaker model is Resemblyzer's voice encoder (Resemble AI, Apache 2.0 licence; a GE2E
encoder, Wan et al. 2018, trained on LibriSpeech and VoxCeleb 1 and 2): a 3-layer LSTM over
40-band mel power spectra (25 ms windows, 10 ms hop) of 1.6 s partials, 1.3 partials a second,
whose unit-length outputs are averaged into one embedding per clip. It ships inside serkit as
an fp32 ONNX graph (``serkit/assets/voices/``, 5.7 MB, converted by ``tools/voice_encoder.py``
from the ``resemblyzer`` 0.1.4 package, with its licence), so it needs neither torch nor that
package; the mel front-end is numpy (librosa's ``melspectrogram`` defaults, as Resemblyzer
computes it). As Resemblyzer does, a quiet clip is raised to -30 dBFS first, and a file is read
for its speech only (:func:`speech_of`: Resemblyzer trims long silences before embedding): the
silence around acted clips (about a second before each RAVDESS sentence) sounds alike for every
speaker of a corpus and drew them into one voice.

Clips are grouped by average-linkage agglomerative clustering on the embeddings' cosine
distance (SciPy: the ``voices`` extra, or ``eval``), cut at :data:`THRESHOLD`: a distance chosen on the training speakers of
serkit's shipped split (``benchmarks/speaker_groups.py --choose-threshold``), not on the
speakers it is judged on. Emotional speech moves a voice's embedding (an angry and a sad clip
of one actor are further apart than two neutral ones), so the groups are voices only roughly;
``benchmarks/speaker_groups.py`` measures what adapting to them gains and costs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from serkit.mel import mel_filterbank

VOICE_MODEL = Path(__file__).parent / "assets" / "voices" / "voice_encoder.onnx"
SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40           # 25 ms windows, 10 ms hop, 40 bands
PARTIAL = 160                               # frames in a partial: 1.6 s
PARTIAL_RATE, MIN_COVERAGE = 1.3, 0.75      # partials a second; the last one's minimum coverage
TARGET_DBFS = -30.0
MIN_SPEECH_S = 0.5                          # less speech than this: the whole clip is embedded
#: Cosine distance at which clusters stop merging (average linkage); see the module docstring.
THRESHOLD = 0.35


@functools.lru_cache(maxsize=1)
def _window_and_filters() -> tuple[np.ndarray, np.ndarray]:
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)   # periodic Hann
    return window, mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS)


def mel_power(wave: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrum of a 16 kHz wave, as ``librosa.feature.melspectrogram``
    computes it with Resemblyzer's settings (centred frames, zero padding, Slaney filters)."""
    window, filters = _window_and_filters()
    x = np.pad(np.asarray(wave, np.float32), (N_FFT // 2, N_FFT // 2))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    spec = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (spec @ filters.T).astype(np.float32)


def partials(n_samples: int) -> list[slice]:
    """The frame ranges of the 1.6 s partials a clip of ``n_samples`` is read as (Resemblyzer's
    ``compute_partial_slices``): every 1 / 1.3 s, the last kept when it covers 75 % or is the only one."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(round(SAMPLE_RATE / PARTIAL_RATE / HOP))
    starts = range(0, max(1, n_frames - PARTIAL + step + 1), step)
    out = [slice(s, s + PARTIAL) for s in starts]
    if len(out) > 1 and (n_samples - out[-1].start * HOP) / (PARTIAL * HOP) < MIN_COVERAGE:
        out = out[:-1]
    return out


@functools.lru_cache(maxsize=1)
def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(VOICE_MODEL), options, providers=["CPUExecutionProvider"])


def embed(wave: np.ndarray) -> np.ndarray:
    """The unit-length voice embedding (256,) of one 16 kHz clip (ValueError when it is empty)."""
    wave = np.asarray(wave, np.float32)
    if not len(wave):
        raise ValueError("an empty clip has no voice to embed")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    gain = 10 ** (TARGET_DBFS / 20) / max(rms, 1e-8)
    if gain > 1:                       # raise quiet clips only, as Resemblyzer does
        wave = wave * np.float32(min(gain, 1e4))
    parts = partials(len(wave))
    wave = np.pad(wave, (0, max(0, parts[-1].stop * HOP - len(wave))))
    mel = mel_power(wave)
    mels = np.stack([mel[p] for p in parts])
    e = _session().run(None, {"mels": mels})[0].mean(axis=0)
    return e / max(float(np.linalg.norm(e)), 1e-8)


def speech_of(wave: np.ndarray) -> np.ndarray:
    """The stretches of ``wave`` (16 kHz) that the shipped models' speech detector hears, joined
    (:func:`serkit.vad.clip_speech` with its ``auto`` detector: silero, with its second look at a
    clip cut tight); the whole clip when they last under :data:`MIN_SPEECH_S`
    (a clip with no speech is answered as such by the scorer; it still needs a voice)."""
    from serkit.vad import clip_speech

    wave = np.asarray(wave, np.float32)
    stretches = clip_speech(wave, SAMPLE_RATE) if len(wave) else []
    speech = np.concatenate([wave[s:e] for s, e in stretches]) if stretches else wave[:0]
    return speech if len(speech) >= MIN_SPEECH_S * SAMPLE_RATE else wave


def embed_speech(wave: np.ndarray) -> np.ndarray:
    """The voice embedding of a file's speech (:func:`embed` of :func:`speech_of`): what
    :func:`group_files` clusters, and what the threshold was chosen on."""
    return embed(speech_of(wave))


def clustering():
    """SciPy's ``fcluster`` and ``linkage``, or ValueError saying how to install them (checked
    before any file is read, so a long job does not fail at its end)."""
    try:
        from scipy.cluster.hierarchy import fcluster, linkage
    except ImportError:
        raise ValueError("telling voices apart (--speakers voice) needs SciPy: pip install 'serkit[voices]' "
                         "(serkit[eval] has it too)") from None
    return fcluster, linkage


def cluster(embeddings: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """A voice label per row of ``embeddings``, numbered in order of first appearance: average
    linkage on cosine distance, merged up to ``threshold`` (None: :data:`THRESHOLD` as it is
    when called). One row is one voice."""
    n = len(embeddings)
    if n < 2:
        return np.zeros(n, np.int64)
    fcluster, linkage = clustering()

    raw = fcluster(linkage(np.asarray(embeddings, np.float64), method="average", metric="cosine"),
                   t=THRESHOLD if threshold is None else threshold, criterion="distance")
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))            # cluster ids by first appearance
    return order[inverse].astype(np.int64)


def add_windows(sums: np.ndarray, rows: Sequence[np.ndarray], lengths: Sequence[int],
                owner: Sequence[int], speech_only: bool = False) -> np.ndarray:
    """Add each window's voice embedding (``rows[i][:lengths[i]]``) to its unit's row
    ``sums[owner[i]]`` (units, 256), in place, and return ``sums``: what a timeline does batch by
    batch as it streams and an upload does for all its units, so both tell voices apart alike.
    ``speech_only``: embed each window's speech (:func:`embed_speech`), for windows cut in
    fixed pieces (no detector chose them, so they hold the pauses too)."""
    voice = embed_speech if speech_only else embed
    for row, length, k in zip(rows, lengths, owner):
        sums[k] += voice(row[:length])
    return sums


def unit_voices(sums: np.ndarray) -> np.ndarray:
    """Each unit's voice (:func:`cluster`) from the sums of its windows' embeddings."""
    return cluster(sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-8))


def voice_groups(embeddings: np.ndarray, threshold: float | None = None) -> list[list[int]]:
    """Row indices of ``embeddings`` grouped by :func:`cluster`, groups in order of first appearance."""
    labels = cluster(embeddings, threshold)
    groups: list[list[int]] = [[] for _ in range(int(labels.max()) + 1 if len(labels) else 0)]
    for i, label in enumerate(labels):
        groups[label].append(i)
    return groups


def group_files(files: Sequence[str], read: Callable[[str], np.ndarray | None],
                threshold: float | None = None) -> list[list[int]]:
    """The indices of ``files`` grouped by voice (:func:`voice_groups`), each file read by
    ``read(file) -> 16 kHz wave`` in turn and embedded for its speech (:func:`speech_of`); a file
    ``read`` cannot give (None) or that is empty is a voice of its own, so that scoring reports
    its error where it always does."""
    clustering()
    rows, heard = [], []
    for i, f in enumerate(files):
        wave = read(f)
        if wave is not None and len(wave):
            rows.append(embed_speech(wave))
            heard.append(i)
    groups = [[heard[j] for j in g] for g in voice_groups(np.stack(rows) if rows else np.zeros((0, 256)), threshold)]
    groups += [[i] for i in sorted(set(range(len(files))) - set(heard))]
    return sorted(groups, key=min)

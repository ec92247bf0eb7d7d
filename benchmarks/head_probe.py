"""Which of a frozen encoder's layers carry the emotion: logistic regressions on one fold.

    python benchmarks/head_probe.py [--encoder serkit:whisper-base-l4 | PATH.onnx] [--fold 0]
                                    [--manifest data/manifest.csv]
    python benchmarks/head_probe.py --time PATH.onnx ... [--repeats 20]

Each clip is read as the scorer reads it (the speech span, `Scorer.speech_window`), through the
encoder graph given (its statistics cached as training caches them), and a standardised
logistic regression (C 0.003) is fitted on the other four folds of the 5-fold speaker split and
tested on ``--fold``: pool UAR and per corpus (ASED on sentences 01-02). Prints one line per
feature set: the mean of layers 1-4 (the shipped design), mean and std of 1-4, and, for an
encoder graph with more layers (e.g. one exported with ``max_layers=6``), layers 1-6 and 5-6.
This is how README's "top layers" and "mean vs stats" figures were measured. A graph exported
with a longer ``clip_seconds`` (``export_stats_encoder(..., clip_seconds=30)``) reads the same
speech spans (at most the scorer's 3 s) followed by silence up to its width: Whisper's own 30 s
context, against the shipped graph's position table cropped to 3 s.

``--time`` only times graphs: one 3 s window (2.5 s of noise, then padding to each graph's own
width) through each, one thread, median of ``--repeats`` calls after a warm-up, with the
shipped graph timed in the same run as the baseline of the ratios.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serkit.audio import CACHE_ROOT, AudioSpec, decode_all
from serkit.corpora import words_give_label
from serkit.encoder_training import encoder_for
from serkit.manifest import read_manifest
from serkit.models.encoder_head import EncoderHead, EncoderHeadConfig
from serkit.scorer import Scorer
from serkit.splits import speaker_folds

LABELS = ["angry", "happy", "sad", "fearful", "disgust", "neutral"]


class Pool:
    """The judged pool as the scorer reads it: per clip (mean, std) statistics of every encoder
    layer over its speech span, with labels, corpus, speaker and the ASED judging mask."""

    def __init__(self, utts, x: np.ndarray, waves, spans, encoder, window: int):
        self.utts, self.x, self.waves, self.spans = utts, x, waves, spans
        self.encoder, self.window = encoder, window          # to read further views of the clips
        self.y = np.array([LABELS.index(u.emotion) for u in utts])
        self.corpus = np.array([u.corpus for u in utts])
        self.speaker = np.array([f"{u.corpus}:{u.speaker}" for u in utts])
        self.judged = np.array([not words_give_label(u) for u in utts])


def graph_window(encoder) -> int | None:
    """The samples an encoder graph takes per row (its ``wave`` input's fixed width), or None."""
    width = encoder.runtime.session.get_inputs()[0].shape[1]
    return width if isinstance(width, int) else None


def encoder_stats(encoder, crops: list[np.ndarray], window: int) -> np.ndarray:
    """(clips, layers, 2 * dim): mean and std of each layer over each crop (cut to the window),
    each crop zero-padded to the graph's own width (wider than the window for a graph exported
    with a longer ``clip_seconds``: the speech is then followed by Whisper's silence padding)."""
    out, width = [], max(window, graph_window(encoder) or window)
    for i in range(0, len(crops), 64):
        part = [c[:window] for c in crops[i:i + 64]]
        rows = np.zeros((len(part), width), np.float32)
        for j, c in enumerate(part):
            rows[j, :len(c)] = c
        mean, std = encoder.stats(rows, np.array([len(c) for c in part]))
        out.append(np.concatenate([mean, std], axis=-1))
    return np.concatenate(out)


def pool_features(manifest: str, backbone: str = "serkit:whisper-base-l4") -> Pool:
    """Every six-emotion clip of ``manifest`` through ``backbone`` as the scorer reads it (the
    speech span, ``Scorer.speech_window``); statistics cached as training caches them. Exits
    with the command to run when there is no manifest."""
    if not Path(manifest).is_file():
        raise SystemExit(f"no manifest {manifest}: run serkit prepare ../shared/corpora -o {manifest}")
    utts = [u for u in read_manifest(manifest) if u.emotion in LABELS]
    waves = decode_all(utts, progress=False)
    encoder = encoder_for(EncoderHead(EncoderHeadConfig(layers=[0], backbone=backbone)), str(CACHE_ROOT))
    scorer = Scorer(encoder, LABELS, AudioSpec())
    spans = [scorer.speech_window(w) for w in waves]
    x = encoder_stats(encoder, [w[slice(*s)] for w, s in zip(waves, spans)], scorer.spec.window_samples)
    return Pool(utts, x, waves, spans, encoder, scorer.spec.window_samples)


def time_graphs(graphs: list[str], repeats: int) -> None:
    """``--time``: each graph's median time for one 3 s window, one thread, against the shipped graph's."""
    from serkit.encoder_training import encoder_file
    from serkit.runtimes import onnx_session

    crop = (0.1 * np.random.default_rng(0).standard_normal(40000)).astype(np.float32)
    base = None
    for spec in ["serkit:whisper-base-l4", *graphs]:
        session = onnx_session(str(encoder_file(spec)), 1)
        width = session.get_inputs()[0].shape[1]
        row = np.zeros((1, width), np.float32)
        row[0, :len(crop)] = crop
        feed = {"wave": row, "lengths": np.array([len(crop)], np.int64)}
        session.run(["mean"], feed)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            session.run(["mean"], feed)
            times.append(time.perf_counter() - t)
        ms = 1000 * float(np.median(times))
        base = base or ms
        print(f"{spec:<48} width {width / 16000:4.0f} s  {ms:7.1f} ms a window  {ms / base:5.1f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="serkit:whisper-base-l4")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--time", nargs="+", metavar="GRAPH", help="only time these encoder graphs (see above)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    if args.time:
        time_graphs(args.time, args.repeats)
        return 0
    pool = pool_features(args.manifest, args.encoder)
    x, y, corpus, judged = pool.x, pool.y, pool.corpus, pool.judged
    utts = pool.utts
    dim = x.shape[-1] // 2
    parts = np.array(list(speaker_folds(utts, 5, seed=0))[args.fold])
    train, test = parts != "test", parts == "test"
    sets = {"mean of layers 1-4 (shipped)": x[:, 1:5, :dim], "mean and std of layers 1-4": x[:, 1:5]}
    if x.shape[1] > 5:
        sets.update({f"mean of layers 1-{x.shape[1] - 1}": x[:, 1:, :dim], f"mean of layers 5-{x.shape[1] - 1}": x[:, 5:, :dim]})
    print(f"{args.encoder}: {len(utts)} clips, {x.shape[1]} hidden layers; fold {args.fold} of 5 as test")
    for name, feats in sets.items():
        t = time.time()
        f = feats.reshape(len(feats), -1)
        pred = make_pipeline(StandardScaler(), LogisticRegression(C=0.003, max_iter=200)).fit(f[train], y[train]).predict(f[test])
        scores = {}
        for c in ["pool", *sorted(set(corpus))]:
            sel = judged[test] & ((corpus[test] == c) if c != "pool" else True)
            scores[c] = recall_score(y[test][sel], pred[sel], labels=np.unique(y[test][sel]), average="macro")
        print(f"{name:<32}" + "  ".join(f"{c} {v:.3f}" for c, v in scores.items()) + f"  ({time.time() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rooms the head never heard: does training on simulated-room views (``--rooms``) help, and what does it cost?

    python benchmarks/rooms.py [--manifest data/manifest.csv]

Every six-emotion clip's speech (as the scorer reads it, through the shipped encoder, statistics
cached as training caches them) is also heard

- as training sees it with ``--rooms``: one room view per training clip, made by
  :func:`serkit.rooms.room_views` itself from each run's training clips (a statistical room
  over the babble of other training speakers or stationary noise; see :mod:`serkit.rooms`);
- in test rooms of another kind: an image-source shoebox room from pyroomacoustics (40 rooms,
  3-10 x 3-8 x 2.5-4 m, Sabine RT60 0.2-0.7 s, which the image method hears as about 0.3-1.3 s,
  source and microphone anywhere at least 0.5 m from the walls) with babble (three clips of
  other speakers) at 5-20 dB SNR (:func:`in_test_room`); and, to see which part costs what, the
  shoebox room alone, the babble alone, and white noise alone at 5-20 dB SNR.

A logistic regression on the mean of layers 1-4 (C 0.003, classes and corpora balanced, as the
shipped head is weighted: :func:`serkit.pool.plan_pool`, :func:`serkit.encoder_training.row_weights`) is trained on the recordings alone and on the recordings plus their
room views (a run's training and validation clips as one training set), over the pool's 5-fold
speaker CV (ASED judged on sentences 01-02) and leave one corpus out, and tested on the
recordings and in each test condition. About 25 minutes here. Needs pyroomacoustics (in the
``dev`` extra).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_probe import LABELS, encoder_stats, pool_features  # noqa: E402

from serkit.encoder_training import row_weights  # noqa: E402
from serkit.pool import plan_pool  # noqa: E402
from serkit.rooms import other_speakers, room_views  # noqa: E402
from serkit.splits import speaker_folds  # noqa: E402

SR = 16000


def shoebox_rooms(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Impulse responses of ``n`` random image-source shoebox rooms (pyroomacoustics)."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        dims = [rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.5, 4)]
        absorption, order = pra.inverse_sabine(rng.uniform(0.2, 0.7), dims)
        room = pra.ShoeBox(dims, fs=SR, materials=pra.Material(absorption), max_order=order)
        room.add_source([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(1.0, 1.8)])
        room.add_microphone([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(0.7, 1.5)])
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float64)
        out.append((h / np.abs(h).max()).astype(np.float32))
    return out


def in_test_room(wave: np.ndarray, rir: np.ndarray, babble: list[np.ndarray], snr_db: float) -> np.ndarray:
    """``wave`` heard in a room (``rir``) over ``babble`` (other voices, summed, in the same room)
    at ``snr_db``; the same length and loudness as ``wave``."""
    y = fftconvolve(wave, rir)[:len(wave)]
    power = float(np.mean(wave ** 2)) + 1e-12
    y *= np.sqrt(power / (float(np.mean(y ** 2)) + 1e-12))
    if not babble:
        return y.astype(np.float32)
    b = np.zeros(len(y))
    for other in babble:
        b += np.resize(other, len(y)) / (np.sqrt(np.mean(other ** 2)) + 1e-9)
    b = fftconvolve(b, rir)[:len(y)]
    y += b * np.sqrt(power / (float(np.mean(b ** 2)) + 1e-12) / 10 ** (snr_db / 10))
    return y.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="data/manifest.csv")
    args = ap.parse_args(argv)
    t = time.time()
    pool = pool_features(args.manifest)
    crops = [w[slice(*s)] for w, s in zip(pool.waves, pool.spans)]
    y, corpus, judged, speaker = pool.y, pool.corpus, pool.judged, pool.speaker
    rooms, rng = shoebox_rooms(), np.random.default_rng(1)
    others = lambda i: [crops[j] for j in other_speakers(speaker, i, rng)]  # noqa: E731
    conditions = {
        "room+babble": lambda i, c: in_test_room(c, rooms[rng.integers(len(rooms))], others(i), rng.uniform(5, 20)),
        "room": lambda i, c: in_test_room(c, rooms[rng.integers(len(rooms))], [], np.inf),
        "babble": lambda i, c: in_test_room(c, np.ones(1, np.float32), others(i), rng.uniform(5, 20)),
        "white": lambda i, c: in_test_room(c, np.ones(1, np.float32), [rng.standard_normal(len(c))], rng.uniform(5, 20)),
    }
    dim = pool.x.shape[-1] // 2

    def features(views):
        return encoder_stats(pool.encoder, views, pool.window)[:, 1:5, :dim].reshape(len(views), -1)

    feats = {"recorded": pool.x[:, 1:5, :dim].reshape(len(y), -1)}
    for name, hear in conditions.items():
        feats[name] = features([hear(i, c) for i, c in enumerate(crops)])
    print(f"{len(y)} clips, {len(set(speaker))} speakers; mean of Whisper-base layers 1-4 over the speech span "
          f"({time.time() - t:.0f} s)", flush=True)
    def weights(ix):
        """Rows' loss weights as ``serkit train --balance-corpora`` weighs the shipped head's."""
        plan = plan_pool(pool.utts, y.tolist(), {"train": ix.tolist(), "val": [], "test": []}, LABELS,
                         balance_corpora=True)
        return row_weights(plan, y[ix])

    def uar(ix, pred):
        keep = judged[ix]
        return recall_score(y[ix][keep], pred[keep], labels=np.unique(y[ix][keep]), average="macro")

    def run(train, test, with_rooms):
        x, rows = feats["recorded"][train], train
        if with_rooms:
            views = [crops[i] for i in train]
            owners = room_views(views, list(train), pool.utts, 0, SR)
            x, rows = np.concatenate([x, features(views[len(train):])]), np.concatenate([train, owners])
        w = np.concatenate([weights(train)] * (2 if with_rooms else 1))
        mu, sd = x.mean(0), x.std(0) + 1e-5
        clf = LogisticRegression(C=0.003, max_iter=500).fit((x - mu) / sd, y[rows], sample_weight=w)
        out = {}
        for cond in feats:
            pred = clf.predict((feats[cond][test] - mu) / sd)
            out[cond] = {"pool": uar(test, pred),
                         **{c: uar(test[corpus[test] == c], pred[corpus[test] == c]) for c in sorted(set(corpus[test]))}}
        return out

    folds = [np.array(p) for p in speaker_folds(pool.utts, 5, seed=0)]
    names = sorted(set(corpus))
    for with_rooms in (False, True):
        label = "recordings + room views" if with_rooms else "recordings only"
        cv = [run(np.flatnonzero(p != "test"), np.flatnonzero(p == "test"), with_rooms) for p in folds]
        loco = {c: run(np.flatnonzero(corpus != c), np.flatnonzero(corpus == c), with_rooms) for c in names}
        for cond in feats:
            pool_uar = [r[cond]["pool"] for r in cv]
            print(f"CV   trained on {label:<24} tested {cond:<12} pool {np.mean(pool_uar):.3f} ± {np.std(pool_uar):.3f}  "
                  + "  ".join(f"{c} {np.mean([r[cond][c] for r in cv]):.3f}" for c in names), flush=True)
        for cond in feats:
            print(f"LOCO trained on {label:<24} tested {cond:<12} "
                  + "  ".join(f"{c} {loco[c][cond]['pool']:.3f}" for c in names)
                  + f"  mean {np.mean([loco[c][cond]['pool'] for c in names]):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What else a frozen Whisper-base encoder can give: other heads, more training views, and
speaker or corpus normalisation, on the pool's 5-fold speaker CV and leave-one-corpus-out.

    python benchmarks/head_variants.py [--manifest data/manifest.csv] [--only NAME ...]
                                       [--encoder serkit:whisper-base-l4 | PATH.onnx]

Features are the shipped design's (mean of layers 1-4 over the speech span, read as the scorer
reads a clip; see head_probe.py), cached as training caches them; ``--encoder`` reads them
through another encoder graph (e.g. one exported with Whisper's whole 30 s context), and
``--layers`` picks other hidden layers than 1-4 (e.g. 1-6 of a graph exported with ``max_layers=6``). Every figure is UAR on
held-out speakers (CV: mean over the 5 folds of the pooled test UAR, then per corpus; ASED
judged on sentences 01-02) or on the held-out corpus (LOCO). Variants:

- ``lr``: the shipped head, a standardised logistic regression (C 0.003 here, fixed);
- ``svm``: an RBF support-vector machine (C 3, balanced class weights) on the same features;
- ``speed``: the logistic regression trained on each clip three times, at speed 1, 0.9 and 1.1
  (soxr resampling of the speech span: pitch and tempo move together, as in speed
  perturbation); tested on the clips as recorded;
- ``adapt``: speaker normalisation, three ways a user could supply a reference:
  * all of a speaker's clips, training and test (the acted corpora give every speaker every
    emotion in equal measure, which flatters it); for LOCO also each corpus by its own clips;
  * an enrolment: each speaker (training and test) centred on the mean of ``k`` of their
    neutral clips (k = 3: RAVDESS and most ASED speakers have 4), those clips left out of the
    scoring, against the plain head on the same clips; speakers with fewer neutral clips are
    left out of both;
  * a batch normalised by itself: the test clips scored in batches of 12 clips of one speaker,
    ``share`` of them one emotion (each in turn), centred on the batch's mean; trained on each
    speaker centred on all their clips. 30 % is about balanced; 60 % is a call that is mostly
    one emotion;
- ``offset``: the speaker's offset estimated from a batch of their clips class by class: each
  clip minus the training mean of the emotion the shipped head gives it, averaged over the
  batch, so that a batch that is mostly one emotion does not pull the reference toward that
  emotion (centring on the batch's mean does). Two heads read the corrected clips: one trained on
  each training speaker centred on all their clips (as ``adapt``'s), and the shipped head itself,
  for which the correction is a shift of its logits (it is linear: the batch's mean logits out,
  the mean over the batch of the class-mean logits of its answers in), so a bundle would need
  only a 6 x 6 table. Batches of ``n`` clips of one speaker, ``share`` of them one emotion, in CV
  and LOCO; loss weighted as shipped (classes and corpora balanced);
- ``balance``: the logistic regression with its loss weighted as ``serkit train`` weighs the
  shipped head's (:func:`serkit.encoder_training.row_weights`): balanced classes (as shipped
  until now), against balanced classes and corpora (``--balance-corpora``: every corpus weighs
  the same, whatever its number of clips), in CV and LOCO, with the mean over the corpora;
- ``nap``: nuisance attribute projection (as in speaker verification, turned around): the top
  ``k`` directions in which the training speakers' mean features differ (each clip first centred
  on its emotion's mean) projected out of the standardised features before the logistic
  regression, classes and corpora balanced as shipped; linear, so it would fold into the shipped
  head's weights. ``k`` 0 (the shipped head), 8, 16, 32, 64;
- ``prosody``: does the encoder miss pitch and loudness? Eleven statistics of each clip's
  pitch (YIN) and loudness (:func:`prosody`; librosa, a test dependency) alone, and beside the
  shipped features (repeated 1 or 10 times, so that the standardised logistic regression can
  weigh them), in CV and LOCO;
- ``transforms``: the features transformed before the logistic regression (loss weighted as
  shipped): each layer's mean scaled to unit length; a signed square root of the standardised
  features; PCA whitening to 512 dimensions; the encoder's layer 0 (its input embedding) beside
  layers 1-4; and test-time augmentation (each test clip also at speed 0.95 and 1.05, the
  shipped head's logits averaged over the three);
- ``mask``: the corpus label mask (``--corpus-label-mask``) on the same logistic regression,
  with the training loss and pool plan of `serkit train` (balanced class weights), fitted by
  L-BFGS in torch: against the same fit without the mask,
  with how often each answers "disgust" for corpora that have none (ASED, nEMO).

This is how RESULTS-default.md's "head variants" tables were measured; of these, only the
corpus balancing (``balance``) is shipped (see there for why).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_probe import LABELS, Pool, encoder_stats, pool_features  # noqa: E402

from serkit.audio import SAMPLE_RATE  # noqa: E402
from serkit.speaker import adapt, fit_speaker_head  # noqa: E402
from serkit.splits import speaker_folds  # noqa: E402

CORPORA = ("ased", "emodb", "nemo", "ravdess")
NEUTRAL = LABELS.index("neutral")
VARIANTS = ("lr", "svm", "speed", "adapt", "offset", "mask", "balance", "nap", "prosody", "transforms")


C = 0.003   # the logistic regressions' inverse regularisation here (fixed)


def lr():
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))


def svm():
    return make_pipeline(StandardScaler(), SVC(C=3, kernel="rbf", class_weight="balanced"))


def uar(y: np.ndarray, pred: np.ndarray) -> float:
    return float(recall_score(y, pred, labels=np.unique(y), average="macro"))


class Bench:
    def __init__(self, pool: Pool, layers: tuple[int, int] = (1, 4)):
        self.pool = pool
        first, last = layers                    # the shipped features: the mean of layers 1-4
        self.f = pool.x[:, first:last + 1, :pool.x.shape[-1] // 2].reshape(len(pool.x), -1)
        self.folds = [np.array(parts) for parts in speaker_folds(pool.utts, 5, seed=0)]

    def cv(self, name: str, f: np.ndarray, make: Callable, extra: list[np.ndarray] = (),
           keep: np.ndarray | None = None, scored: np.ndarray | None = None, weigh: Callable | None = None) -> None:
        """5-fold speaker CV; ``extra`` are further training views (rows aligned with ``f``);
        only rows in ``keep`` train or test, and only rows in ``scored`` are scored; ``weigh``
        (training rows -> their loss weights) weighs the fit (see :func:`fitted`)."""
        t, p, res = time.time(), self.pool, []
        keep = np.ones(len(f), bool) if keep is None else keep
        scored = keep if scored is None else scored & keep
        for parts in self.folds:
            tr, te = (parts != "test") & keep, (parts == "test") & scored
            x = np.concatenate([f[tr], *(v[tr] for v in extra)])
            y = np.concatenate([p.y[tr]] * (1 + len(extra)))
            pred = fitted(make(), x, y, weigh and weigh(tr)).predict(f[te])
            judged = p.judged[te]
            row = {"pool": uar(p.y[te][judged], pred[judged])}
            for c in CORPORA:
                sel = judged & (p.corpus[te] == c)
                row[c] = uar(p.y[te][sel], pred[sel])
            res.append(row)
        mean = {k: np.mean([r[k] for r in res]) for k in res[0]}
        sd = np.std([r["pool"] for r in res])
        print(f"CV   {name:<44} pool {mean['pool']:.3f} ± {sd:.3f}  "
              + "  ".join(f"{c} {mean[c]:.3f}" for c in CORPORA)
              + f"  corpus mean {np.mean([mean[c] for c in CORPORA]):.3f}  ({time.time() - t:.0f} s)", flush=True)

    def enrolment(self, k: int = 3) -> None:
        """Each speaker centred on ``k`` of their neutral clips, which are then not scored."""
        p, rng = self.pool, np.random.default_rng(0)
        keep, reference, z = np.zeros(len(p.y), bool), np.zeros(len(p.y), bool), self.f.copy()
        for s in np.unique(p.speaker):
            rows = np.flatnonzero(p.speaker == s)
            neutral = rows[p.y[rows] == NEUTRAL]
            if len(neutral) < k:
                continue
            ref = rng.choice(neutral, k, replace=False)
            keep[rows], reference[ref] = True, True
            z[rows] -= self.f[ref].mean(0)
        print(f"     enrolment of {k} neutral clips: {keep.sum() - reference.sum()} clips scored, "
              f"{len(set(p.speaker[keep]))} speakers with {k} neutral clips")
        self.cv("LR, same clips, no normalisation", self.f, lr, keep=keep, scored=~reference)
        self.cv(f"LR, centred on {k} neutral clips (enrolment)", z, lr, keep=keep, scored=~reference)

    def batches(self, share: float, n: int = 12, k: int = 60) -> None:
        """Test clips scored in batches of ``n`` clips of one speaker, ``share`` of them one
        emotion (each emotion in turn), each batch centred on its own mean; and centred only
        within the ``k`` directions in which the training speakers' means differ (the batch's
        offset projected onto them), so that an offset along an emotion's direction is kept."""
        p, rng = self.pool, np.random.default_rng(0)
        own = np.stack([self.f[p.speaker == s].mean(0) for s in p.speaker])   # each clip's speaker mean
        truth, plain, adapted, within = [], [], [], []
        for parts in self.folds:
            tr, te = parts != "test", (parts == "test") & p.judged
            base, norm = lr().fit(self.f[tr], p.y[tr]), lr().fit(self.f[tr] - own[tr], p.y[tr])
            scale = StandardScaler().fit(self.f[tr])
            means = scale.transform(np.stack([self.f[tr & (p.speaker == s)].mean(0) for s in np.unique(p.speaker[tr])]))
            axes = np.linalg.svd(means - means.mean(0), full_matrices=False)[2][:k]    # (k, features)

            def off(z: np.ndarray, ref: np.ndarray) -> np.ndarray:   # z minus ref's offset along the axes
                return scale.inverse_transform(scale.transform(z) - (scale.transform(ref).mean(0) @ axes.T) @ axes)

            sub = lr().fit(np.concatenate([off(self.f[tr & (p.speaker == s)], self.f[tr & (p.speaker == s)])
                                           for s in np.unique(p.speaker[tr])]),
                           np.concatenate([p.y[tr & (p.speaker == s)] for s in np.unique(p.speaker[tr])]))
            for s in np.unique(p.speaker[te]):
                for batch in self.batch_draws(np.flatnonzero(te & (p.speaker == s)), n, share, rng):
                    truth.append(p.y[batch])
                    plain.append(base.predict(self.f[batch]))
                    adapted.append(norm.predict(self.f[batch] - self.f[batch].mean(0)))
                    within.append(sub.predict(off(self.f[batch], self.f[batch])))
        truth, plain, adapted, within = map(np.concatenate, (truth, plain, adapted, within))
        print(f"CV   batches of {n} clips of one speaker, {share:.0%} one emotion ({len(truth)} scored): "
              f"plain LR {uar(truth, plain):.3f}, centred on the batch {uar(truth, adapted):.3f}, "
              f"centred within {k} speaker directions {uar(truth, within):.3f}", flush=True)

    def batch_draws(self, rows: np.ndarray, n: int, share: float, rng: np.random.Generator) -> list[np.ndarray]:
        """Batches of ``n`` of ``rows`` (one speaker's clips), ``share`` of each one emotion,
        each emotion in turn; a batch of fewer than 4 clips is dropped."""
        y, out = self.pool.y, []
        for e in np.unique(y[rows]):
            main, rest = rows[y[rows] == e], rows[y[rows] != e]
            k_main = min(len(main), int(round(n * share)))
            batch = np.concatenate([rng.choice(main, k_main, replace=False),
                                    rng.choice(rest, min(len(rest), n - k_main), replace=False)])
            if len(batch) >= 4:
                out.append(batch)
        return out

    def offsets(self, draws: list[tuple[int, float]], loco_draws: list[tuple[int, float]], weigh: Callable) -> None:
        """The ``offset`` variant (see the module docstring): plain head, the speaker-centred head
        on the batch centred on its mean, and on the batch less its class-conditional offset, and
        the shipped head's logits shifted by that offset; CV for ``draws``, LOCO for ``loco_draws``
        ((n, share) pairs). The heads are fitted once per fold or held-out corpus."""
        p, f = self.pool, self.f
        kinds = ("plain", "centred on the batch", "class-conditional offset", "shipped head, logits shifted")

        def fit(tr: np.ndarray):
            w = weigh(tr)
            base = fitted(lr(), f[tr], p.y[tr], w)
            per = [p.y[tr] == c for c in base.classes_]
            table = base.decision_function(np.stack([np.average(f[tr][m], axis=0, weights=w[m]) for m in per]))
            return base, fit_speaker_head(f[tr], p.y[tr], p.speaker[tr], C, w), table

        def score(heads, te: np.ndarray, n: int, share: float, rng, out: dict) -> None:
            base, head, table = heads
            cl = base.classes_
            for s in np.unique(p.speaker[te]):
                for batch in self.batch_draws(np.flatnonzero(te & (p.speaker == s)), n, share, rng):
                    x = f[batch]
                    z, u = base.decision_function(x), head.logits(x)
                    for kind, pred in zip(kinds, (z, u - u.mean(0) + head.bias, adapt(z, u, head.table),
                                                  adapt(z, z, table))):
                        pred = pred.argmax(1)
                        out.setdefault(kind, []).append(cl[pred])
                    out.setdefault("truth", []).append(p.y[batch])

        def line(out: dict) -> str:
            truth = np.concatenate(out["truth"])
            return "  ".join(f"{k} {uar(truth, np.concatenate(out[k])):.3f}" for k in kinds)

        t = time.time()
        folds = [(fit(parts != "test"), (parts == "test") & p.judged) for parts in self.folds]
        for n, share in draws:
            rng, out = np.random.default_rng(0), {}
            for heads, te in folds:
                score(heads, te, n, share, rng, out)
            print(f"CV   batches of {n} clips of one speaker, {share:.0%} one emotion ({sum(map(len, out['truth']))} "
                  f"scored): {line(out)}  ({time.time() - t:.0f} s)", flush=True)
        held = {c: fit(p.corpus != c) for c in CORPORA}
        for n, share in loco_draws:
            for c in CORPORA:
                rng, out = np.random.default_rng(0), {}
                score(held[c], (p.corpus == c) & p.judged, n, share, rng, out)
                print(f"LOCO {c:<8} batches of {n}, {share:.0%} one emotion: {line(out)}", flush=True)

    def loco(self, name: str, f: np.ndarray, make: Callable, weigh: Callable | None = None) -> None:
        t, p, out = time.time(), self.pool, []
        for c in CORPORA:
            tr, te = p.corpus != c, p.corpus == c
            pred = fitted(make(), f[tr], p.y[tr], weigh and weigh(tr)).predict(f[te])
            out.append(uar(p.y[te][p.judged[te]], pred[p.judged[te]]))
        print(f"LOCO {name:<44} " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CORPORA, out))
              + f"  mean {np.mean(out):.3f}  ({time.time() - t:.0f} s)", flush=True)

    def speed_views(self, speeds=(0.9, 1.1)) -> list[np.ndarray]:
        p, views = self.pool, []
        for s in speeds:
            crops = [soxr.resample(w[a:b], SAMPLE_RATE, int(round(SAMPLE_RATE / s))).astype(np.float32)
                     for w, (a, b) in zip(p.waves, p.spans)]
            x = encoder_stats(p.encoder, crops, p.window)
            views.append(x[:, 1:5, :x.shape[-1] // 2].reshape(len(x), -1))
        return views


def masked_lr(z: np.ndarray, y: np.ndarray, weights, masks: np.ndarray | None, C: float = 0.003):
    """An L2 (``C`` as scikit-learn's) multinomial logistic regression on standardised ``z``, its
    loss serkit's training loss (:func:`serkit.pool.masked_cross_entropy` with the pool's class
    ``weights`` and, when given, corpus label ``masks``), summed over clips as scikit-learn sums
    it. Returns (weights, bias)."""
    import torch

    from serkit.pool import masked_cross_entropy

    zt, yt = torch.from_numpy(z).double(), torch.from_numpy(y)
    w = weights.double()
    total = w[yt].sum()                              # masked_cross_entropy is a w-weighted mean
    mask = None if masks is None else torch.from_numpy(masks)
    W = torch.zeros(len(LABELS), z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(LABELS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=300, line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure():
        opt.zero_grad()
        loss = masked_cross_entropy(zt @ W.T + b, yt, mask, w) * total + 0.5 / C * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().numpy(), b.detach().numpy()


def mask_comparison(b: "Bench") -> None:
    """Each fold's plan as ``serkit train`` makes it (:func:`serkit.pool.plan_pool`: balanced class
    weights, and corpus label masks or not), fitted by :func:`masked_lr`."""
    from serkit.pool import plan_pool

    p, disgust = b.pool, LABELS.index("disgust")
    for name, use in (("balanced LR, no corpus label mask", False), ("balanced LR, corpus label mask", True)):
        t, rows = time.time(), []
        for parts in b.folds:
            tr, te = parts != "test", parts == "test"
            plan = plan_pool(p.utts, p.y.tolist(), {"train": np.flatnonzero(tr).tolist(), "val": [], "test": []},
                             LABELS, corpus_label_mask=use)
            scaler = StandardScaler().fit(b.f[tr])
            z = scaler.transform(b.f)
            W, bias = masked_lr(z[tr], p.y[tr], plan.class_weights, None if plan.masks is None else plan.masks[tr])
            pred = np.argmax(z[te] @ W.T + bias, 1)
            judged, yt, ct = p.judged[te], p.y[te], p.corpus[te]
            row = {"pool": uar(yt[judged], pred[judged])}
            row.update({c: uar(yt[judged & (ct == c)], pred[judged & (ct == c)]) for c in CORPORA})
            none = judged & np.isin(ct, [c for c, labels in plan.corpus_labels.items() if "disgust" not in labels])
            row["says disgust (no-disgust corpora)"] = float(np.mean(pred[none] == disgust))
            row["disgust recall"] = float(np.mean(pred[judged & (yt == disgust)] == disgust))
            rows.append(row)
        mean = {k: np.mean([r[k] for r in rows]) for k in rows[0]}
        print(f"CV   {name:<44} " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items())
              + f"  ({time.time() - t:.0f} s)", flush=True)


def fitted(model, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None):
    """``model`` (a pipeline) fitted, its last step weighing the rows by ``weights`` if given."""
    return model.fit(x, y) if weights is None else model.fit(x, y, **{f"{model.steps[-1][0]}__sample_weight": weights})


def plan_weights(b: "Bench", corpora: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Training rows -> their loss weights as ``serkit train`` weighs the shipped head's
    (:func:`serkit.pool.plan_pool`, :func:`serkit.encoder_training.row_weights`): classes
    balanced, and corpora too with ``corpora`` (``--balance-corpora``)."""
    from serkit.encoder_training import row_weights
    from serkit.pool import plan_pool

    p = b.pool

    def weigh(tr: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(tr).tolist()
        plan = plan_pool(p.utts, p.y.tolist(), {"train": rows, "val": [], "test": []}, LABELS, balance_corpora=corpora)
        return row_weights(plan, p.y[tr])

    return weigh


class NAP:
    """Standardise, then project out the ``k`` main directions of the training speakers' mean
    features (each row first centred on its class's mean), then ``make()``'s classifier."""

    def __init__(self, k: int, speakers: np.ndarray, make: Callable):
        self.k, self.speakers, self.model = k, speakers, make()

    def fit(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, **fit_args):
        self.scaler = StandardScaler().fit(x)
        z = self.scaler.transform(x)
        r = z - np.stack([z[y == c].mean(0) for c in np.unique(y)])[np.searchsorted(np.unique(y), y)]
        groups = self.speakers[rows]
        means = np.stack([r[groups == g].mean(0) for g in np.unique(groups)])
        self.basis = np.linalg.svd(means - means.mean(0), full_matrices=False)[2][:self.k]
        self.model.fit(self.project(z), y, **fit_args)
        return self

    def project(self, z: np.ndarray) -> np.ndarray:
        return z - (z @ self.basis.T) @ self.basis

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.project(self.scaler.transform(x)))


def nap_comparison(b: "Bench") -> None:
    """CV and LOCO of the shipped head's fit with ``k`` speaker directions projected out."""
    p, weigh = b.pool, plan_weights(b, True)
    lr_only = lambda: LogisticRegression(C=0.003, max_iter=1000)  # noqa: E731
    for k in (0, 8, 16, 32, 64):
        t, rows, loco = time.time(), [], []
        for parts in b.folds:
            tr, te = parts != "test", parts == "test"
            pred = NAP(k, p.speaker, lr_only).fit(b.f[tr], p.y[tr], np.flatnonzero(tr), sample_weight=weigh(tr)).predict(b.f[te])
            judged = p.judged[te]
            rows.append([uar(p.y[te][judged], pred[judged])]
                        + [uar(p.y[te][judged & (p.corpus[te] == c)], pred[judged & (p.corpus[te] == c)]) for c in CORPORA])
        for c in CORPORA:
            tr, te = p.corpus != c, p.corpus == c
            pred = NAP(k, p.speaker, lr_only).fit(b.f[tr], p.y[tr], np.flatnonzero(tr), sample_weight=weigh(tr)).predict(b.f[te])
            loco.append(uar(p.y[te][p.judged[te]], pred[p.judged[te]]))
        m = np.mean(rows, 0)
        print(f"NAP k={k:<3} CV pool {m[0]:.3f} ± {np.std([r[0] for r in rows]):.3f}  "
              + "  ".join(f"{c} {v:.3f}" for c, v in zip(CORPORA, m[1:]))
              + "  LOCO " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CORPORA, loco))
              + f"  mean {np.mean(loco):.3f}  ({time.time() - t:.0f} s)", flush=True)


def prosody(pool: Pool) -> np.ndarray:
    """(clips, 11) pitch and loudness statistics of each clip's speech span, none of them
    absolute (semitones and decibels relative to the clip's own median or peak, except the
    median pitch itself): median pitch in semitones re 100 Hz, its spread (std, 10-90 and
    5-95 % ranges about the median), how fast it moves (mean absolute and std of its change per
    10 ms), the voiced share, and the loudness spread and movement of the voiced frames. Pitch by
    librosa's YIN (60-600 Hz), loudness by its RMS; frames within 30 dB of the clip's loudest
    and with a pitch inside the range count as voiced. The span's length is left out (it gives
    ASED's emotions away)."""
    import librosa

    out = []
    for w, (a, b) in zip(pool.waves, pool.spans):
        x = np.asarray(w[a:b], np.float32)
        x = np.pad(x, (0, max(0, 2048 - len(x))))
        f0 = librosa.yin(x, fmin=60, fmax=600, sr=SAMPLE_RATE, frame_length=1024, hop_length=160)
        db = 20 * np.log10(librosa.feature.rms(y=x, frame_length=400, hop_length=160)[0] + 1e-6)
        n = min(len(f0), len(db))
        f0, db = f0[:n], db[:n]
        voiced = (db > db.max() - 30) & (f0 > 61) & (f0 < 590)
        if voiced.sum() < 3:
            voiced = db > db.max() - 30
        st = 12 * np.log2(f0[voiced] / 100.0)
        med, step = np.median(st), np.diff(st) if len(st) > 1 else np.zeros(1)
        loud = np.diff(db[voiced]) if voiced.sum() > 1 else np.zeros(1)
        out.append([med, st.std(), np.percentile(st, 90) - np.percentile(st, 10), np.percentile(st, 95) - med,
                    med - np.percentile(st, 5), np.abs(step).mean(), step.std(), voiced.mean(),
                    db[voiced].std(), np.abs(loud).mean(), np.percentile(db, 95) - np.percentile(db, 50)])
    return np.array(out, np.float32)


def normalised(f: np.ndarray, groups: np.ndarray, reference: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Each group's rows standardised by the mean and std of the rows ``reference(indices)`` picks."""
    out = np.empty_like(f)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        ref = f[reference(rows)]
        out[rows] = (f[rows] - ref.mean(0)) / (ref.std(0) + 1e-6)
    return out


def transforms(b: "Bench") -> None:
    """The ``transforms`` variant (see the module docstring), against the shipped head on the same folds."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import FunctionTransformer

    p, weigh = b.pool, plan_weights(b, corpora=True)
    dim = p.x.shape[-1] // 2

    def layer_unit(x: np.ndarray) -> np.ndarray:
        z = x.reshape(len(x), -1, dim)
        return (z / np.linalg.norm(z, axis=2, keepdims=True)).reshape(len(x), -1)

    def then_lr(*steps):
        return lambda: make_pipeline(StandardScaler(), *steps, LogisticRegression(C=C, max_iter=300))

    signed_sqrt = FunctionTransformer(lambda x: np.sign(x) * np.sqrt(np.abs(x)))
    b.cv("LR, classes and corpora balanced (shipped)", b.f, lr, weigh=weigh)
    b.cv("LR on each layer's mean scaled to unit length", layer_unit(b.f), lr, weigh=weigh)
    b.cv("LR on a signed square root", b.f, then_lr(signed_sqrt, StandardScaler()), weigh=weigh)
    b.cv("LR on PCA-whitened features (512)", b.f, then_lr(PCA(512, whiten=True, random_state=0)), weigh=weigh)
    b.cv("LR on layers 0-4", p.x[:, 0:5, :dim].reshape(len(p.x), -1), lr, weigh=weigh)
    # test-time augmentation: the shipped head's logits averaged over the clip at three speeds
    t, views, rows = time.time(), b.speed_views((0.95, 1.05)), []
    for parts in b.folds:
        tr, te = parts != "test", parts == "test"
        head = fitted(lr(), b.f[tr], p.y[tr], weigh(tr))
        pred = np.mean([head.decision_function(v[te]) for v in (b.f, *views)], axis=0).argmax(1)
        judged = p.judged[te]
        rows.append([uar(p.y[te][judged], pred[judged])]
                    + [uar(p.y[te][judged & (p.corpus[te] == c)], pred[judged & (p.corpus[te] == c)]) for c in CORPORA])
    mean = np.mean(rows, axis=0)
    print(f"CV   {'shipped head, logits over speeds 0.95/1/1.05':<44} pool {mean[0]:.3f} ± {np.std([r[0] for r in rows]):.3f}  "
          + "  ".join(f"{c} {v:.3f}" for c, v in zip(CORPORA, mean[1:])) + f"  ({time.time() - t:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--encoder", default="serkit:whisper-base-l4",
                    help="the encoder graph whose layers are read (head_probe.py's --encoder)")
    ap.add_argument("--layers", default="1-4", help="FIRST-LAST: the hidden layers whose means are the features "
                    "(1-6 needs a graph exported with max_layers=6)")
    args = ap.parse_args(argv)
    try:
        first, last = (int(v) for v in args.layers.split("-"))
    except ValueError:
        raise SystemExit(f"--layers {args.layers}: give FIRST-LAST, e.g. 1-4") from None
    if not 0 <= first <= last:
        raise SystemExit(f"--layers {args.layers}: FIRST-LAST with 0 <= FIRST <= LAST")
    b = Bench(pool_features(args.manifest, args.encoder), (first, last))
    p = b.pool
    if last >= p.x.shape[1]:
        raise SystemExit(f"--layers {args.layers}: {args.encoder} has hidden layers 0-{p.x.shape[1] - 1}")
    print(f"{len(p.y)} clips, {len(set(p.speaker))} speakers; mean of layers {first}-{last} of {args.encoder} "
          "over the speech span")
    if "lr" in args.only:
        b.cv("logistic regression (shipped head)", b.f, lr)
        b.loco("logistic regression (shipped head)", b.f, lr)
    if "svm" in args.only:
        b.cv("RBF SVM", b.f, svm)
        b.loco("RBF SVM", b.f, svm)
    if "speed" in args.only:
        b.cv("logistic regression + speed 0.9/1.1 views", b.f, lr, extra=b.speed_views())
    if "adapt" in args.only:
        every = lambda rows: rows  # noqa: E731
        b.cv("LR, speaker-normalised (all own clips)", normalised(b.f, p.speaker, every), lr)
        b.enrolment(3)
        b.batches(0.3)
        b.batches(0.6)
        b.batches(0.9)
        b.loco("LR, corpus-normalised (all own clips)", normalised(b.f, p.corpus, every), lr)
        b.loco("LR, speaker-normalised (all own clips)", normalised(b.f, p.speaker, every), lr)
    if "offset" in args.only:
        b.offsets([(12, 0.3), (12, 0.6), (12, 0.9), (12, 1.0), (4, 1.0), (8, 1.0), (24, 0.9)],
                  [(12, 0.3), (12, 0.9), (12, 1.0)], plan_weights(b, corpora=True))
    if "mask" in args.only:
        mask_comparison(b)
    if "nap" in args.only:
        nap_comparison(b)
    if "prosody" in args.only:
        pitch = prosody(p)
        if "lr" not in args.only:   # the shipped head on the same folds, to compare with
            b.cv("logistic regression (shipped head)", b.f, lr)
            b.loco("logistic regression (shipped head)", b.f, lr)
        b.cv("LR, pitch and loudness statistics alone", pitch, lambda: make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=500)))
        for k in (1, 10):   # the 11 statistics repeated k times: k x their weight against 2,048 features
            b.cv(f"LR, encoder features + the statistics x{k}", np.hstack([b.f, np.tile(pitch, k)]), lr)
            b.loco(f"LR, encoder features + the statistics x{k}", np.hstack([b.f, np.tile(pitch, k)]), lr)
    if "transforms" in args.only:
        transforms(b)
    if "balance" in args.only:
        for name, corpora in (("LR, classes balanced (as shipped until now)", False),
                              ("LR, classes and corpora balanced (shipped)", True)):
            b.cv(name, b.f, lr, weigh=plan_weights(b, corpora))
            b.loco(name, b.f, lr, weigh=plan_weights(b, corpora))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

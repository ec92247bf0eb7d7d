"""Training an encoder-head model (``--model encoder_head``): only the head trains.

Each training clip is seen as ``views`` speech crops, each run once through the frozen ONNX
encoder (the same graph that serves), and their layer statistics are cached on disk, keyed by
the encoder's bytes and the window's samples:

- view 0 is exactly what the scorer scores (:meth:`serkit.scorer.Scorer.units`: the speech from
  its first start to its last end, at the start of the window, zero-padded), so validation and
  test clips are seen as users' clips are;
- views 1.. are augmented: the speech span widened into the clip's own silence by a random
  0-0.4 s at each end (so the model does not depend on where the detector cuts), a random
  gain (±6 dB) and, half of the time, white noise at 15-40 dB SNR;
- with ``--rooms`` (on by default), one more view of each clip: its speech span as a microphone
  across a simulated reverberant, noisy room hears it (:func:`serkit.rooms.room_view`), also for
  a linear head, whose other views are view 0 alone.

An MLP head then trains with Lightning on cached features, in seconds per epoch; a linear head
(``head_hidden=0``, the shipped default's) is a logistic regression fitted by scikit-learn on
view 0 alone, its C chosen on validation (:func:`fit_linear_head`), then (``--refit``, on by
default) fitted again with that C on the training and validation clips together; the head
fitted before the refit fits the temperature and reports on validation, as scikit-learn's
``CalibratedClassifierCV(ensemble=False)`` calibrates on held-out predictions and serves the
classifier refitted on everything. Evaluation goes through the
Predictor (the one scorer) with the cache beneath the encoder, so it scores exactly what
``serkit predict`` would.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, TensorDataset

from serkit.audio import AudioSpec
from serkit.backbones import ENCODER_FILE, PREFIX, encoder_path, shipped
from serkit.data import collate_units
from serkit.corpora import judged
from serkit.manifest import Utterance
from serkit.pool import PoolPlan, plan_pool, pool_loader
from serkit.rooms import ROOMS_NOTE, clip_seed, room_views
from serkit.runtimes import EncoderHeadRuntime, NumpyHead
from serkit.scorer import Scorer, clip_probabilities, mean_by
from serkit.speaker import fit_speaker_head

AUG_WIDEN_S = 0.4


class StatsCache:
    """Encoder statistics per window on disk: ``<root>/<encoder sha256[:16]>/<window digest>.npy``
    holding (2, layers, dim) float32 (mean, std). Memory-mapped reads, atomic writes."""

    def __init__(self, root: str | os.PathLike | None, encoder: Path):
        digest = hashlib.sha256(encoder.read_bytes()).hexdigest()[:16]
        self.folder = Path(root) / digest if root is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    @staticmethod
    def key(window: np.ndarray, length: int) -> str:
        return hashlib.blake2b(np.ascontiguousarray(window[:length]).tobytes(), digest_size=16).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.npy"
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def put(self, key: str, value: np.ndarray) -> None:
        if self.folder is None:
            return
        path = self.folder / f"{key}.npy"
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
        np.save(tmp, value, allow_pickle=False)
        os.replace(tmp, path)


class CachedEncoder:
    """An :class:`EncoderHeadRuntime`'s encoder with a :class:`StatsCache` beneath it: the same
    numbers (each window runs alone, see EncoderHeadRuntime), computed once."""

    def __init__(self, runtime: EncoderHeadRuntime, cache: StatsCache):
        self.runtime, self.cache = runtime, cache

    def stats(self, windows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = [self.cache.key(w, int(n)) for w, n in zip(windows, lengths)]
        found = [self.cache.get(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        self.cache.hits += len(keys) - len(todo)
        self.cache.misses += len(todo)
        if todo:
            mean, std = self.runtime.stats(windows[todo], lengths[todo])
            for j, i in enumerate(todo):
                found[i] = np.stack([mean[j], std[j]])
                self.cache.put(keys[i], found[i])
        both = np.stack(found)                        # (batch, 2, layers, dim)
        return both[:, 0], both[:, 1]

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.runtime.head(*self.stats(windows, lengths))


def augmented(wave: np.ndarray, span: tuple[int, int], window: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A training view of a clip: its speech span widened into its own silence, gain and noise."""
    s, e = span
    s = max(0, s - int(rng.uniform(0, AUG_WIDEN_S) * sr))
    e = min(len(wave), e + int(rng.uniform(0, AUG_WIDEN_S) * sr))
    if e - s > window:
        s = int(rng.integers(s, e - window + 1))
        e = s + window
    x = wave[s:e] * np.float32(10 ** (rng.uniform(-6, 6) / 20))
    if rng.random() < 0.5:
        power = float(np.mean(x ** 2)) + 1e-10
        x = x + rng.standard_normal(len(x)).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (rng.uniform(15, 40) / 10)))
    return x.astype(np.float32)


def encoder_file(spec: str) -> Path:
    """The encoder graph a run trains with: a shipped ``serkit:NAME`` or an ``.onnx`` file (made by
    :func:`serkit.models.encoder_head.export_stats_encoder`), which the bundle then carries."""
    if spec.startswith(PREFIX):
        return encoder_path(spec, Path("."))
    path = Path(spec).expanduser()
    if path.suffix != ".onnx" or not path.is_file():
        raise ValueError(f"encoder {spec!r}: name a shipped encoder ({', '.join(shipped()) or 'none'}) "
                         "or an encoder .onnx file")
    return path


def bundle_files(model: torch.nn.Module) -> dict[str, Path]:
    """Files the bundle must carry (an encoder that is not shipped), and the config renamed to it."""
    spec = model.config.backbone
    if spec.startswith(PREFIX):
        return {}
    model.config.backbone = ENCODER_FILE
    return {ENCODER_FILE: encoder_file(spec)}


def encoder_for(model: torch.nn.Module, cache_dir: str | None, threads: int | None = None) -> CachedEncoder:
    """The cached encoder of an :class:`~serkit.models.encoder_head.EncoderHead` (the head as it is now)."""
    path = encoder_file(model.config.backbone)
    runtime = EncoderHeadRuntime(path, numpy_head(model), threads=threads)
    return CachedEncoder(runtime, StatsCache(Path(cache_dir) / "encoder-stats" if cache_dir else None, path))


def numpy_head(model: torch.nn.Module) -> NumpyHead:
    from dataclasses import asdict

    state = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    return NumpyHead(state, asdict(model.config))


def view_features(encoder: CachedEncoder, model: torch.nn.Module, crops: list[np.ndarray], window: int,
                  progress: bool, label: str) -> np.ndarray:
    """Head inputs (clips, layers, features) of crops (each at most ``window`` samples)."""
    out = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(label, total=len(crops))
        for i in range(0, len(crops), 32):
            chunk = crops[i:i + 32]
            rows = np.zeros((len(chunk), window), np.float32)
            lengths = np.array([len(c) for c in chunk], np.int64)
            for j, c in enumerate(chunk):
                rows[j, :len(c)] = c
            out.append(model.select(*encoder.stats(rows, lengths)))
            bar.advance(task, len(chunk))
    return np.concatenate(out).astype(np.float32)


def head_loaders(model: torch.nn.Module, utts: list[Utterance], waves: list[np.ndarray], y: list[int],
                 sel: dict[str, list[int]], cfg: Any, spec: AudioSpec, plan: PoolPlan, labels: list[str],
                 views: int = 3):
    """For :func:`serkit.training.train`: the head to train, a ``loader(part, train)`` factory
    over cached features of speech views (drawn, weighted and masked as the pool ``plan`` says),
    and what to record in the bundle."""
    encoder = encoder_for(model, cfg.cache_dir or None)
    scorer = Scorer(encoder, list(range(model.config.n_classes)), spec, vad=cfg.vad)
    window, sr = spec.window_samples, spec.sample_rate
    width = encoder.runtime.session.get_inputs()[0].shape[1]
    if isinstance(width, int) and width != window:
        raise ValueError(f"the encoder {model.config.backbone} takes windows of {width / sr:g} s; "
                         f"--clip-seconds {spec.clip_seconds:g} does not fit it")
    spans = {i: scorer.speech_window(waves[i]) for i in sel["train"]}
    linear = model.config.head_hidden == 0 and model.config.combine == "concat"
    crops, owner = [], []
    for i in sel["train"]:
        crops.append(waves[i][slice(*spans[i])])
        owner.append(i)
        for view in range(1, views if cfg.augment and not linear else 1):
            # seeded by the clip and the view, not the run: every fold of a cross-validation
            # sees a clip's same views, so their encoder statistics are computed once
            rng = np.random.default_rng([cfg.seed, view, clip_seed(utts[i])])
            crops.append(augmented(waves[i], spans[i], window, sr, rng))
            owner.append(i)
    owner += room_views(crops, owner, utts, cfg.seed, sr) if cfg.rooms else []
    x_train = view_features(encoder, model, crops, window, cfg.progress, "encoding training views")
    model.fit_normalisation(x_train)
    c = encoder.cache
    note = {"views": len(crops) // max(1, len(sel["train"])), "windows_computed": c.misses, "windows_cached": c.hits,
            "augment": f"views 1..: speech span widened by up to {AUG_WIDEN_S} s, gain ±6 dB, noise 15-40 dB SNR"
                       if views > 1 and cfg.augment and not linear else "none"}
    if cfg.rooms:
        note["rooms"] = ROOMS_NOTE
    if cfg.progress:
        print(f"encoder statistics: {c.hits} cached, {c.misses} computed", flush=True)
    row_plan = per_row(plan, sel["train"], owner)
    y_rows = np.array([y[i] for i in owner])
    # validation clips as the scorer reads them (their units found once)
    val = UnitFeatures(scorer, encoder, model, [waves[i] for i in sel["val"]], cfg.progress)
    if linear:
        # a linear head is a logistic regression: fitted to convergence by scikit-learn, its
        # regularisation chosen on validation (clips scored as the scorer scores them), instead
        # of epochs of gradient steps
        val_uar = validation_uar(scored_validation(val), np.array([y[i] for i in sel["val"]]),
                                 judged([utts[i] for i in sel["val"]]))
        fit = fit_linear_head(model, x_train, y_rows, val_uar, row_weights(row_plan, y_rows))
        extra = {"encoder_cache": note, "head_fit": fit}
        rows = (x_train, y_rows, owner, row_weights(row_plan, y_rows))      # what the served head learnt
        if cfg.refit and sel["val"]:
            # C is chosen; the validation speakers join the training. The head fitted without
            # them stays the one that fits the temperature and reports on validation (finish()).
            extra["calibration_state"] = {k: v.clone() for k, v in model.state_dict().items()}
            both = sel["train"] + sel["val"]
            crops = [waves[i][slice(*scorer.window_of(units, len(waves[i])))] for i, units in zip(sel["val"], val.units)]
            extra_owner = list(sel["val"])
            extra_owner += room_views(crops, extra_owner, utts, cfg.seed, sr) if cfg.rooms else []
            x_val = view_features(encoder, model, crops, window, cfg.progress, "encoding validation clips for the refit")
            x_all, row_owner = np.concatenate([x_train, x_val]), owner + extra_owner
            y_all = np.array([y[i] for i in row_owner])
            plan_all = per_row(plan_pool(utts, y, {**sel, "train": both}, labels, cfg.class_weights,
                                         cfg.balance_corpora), both, row_owner)
            model.fit_normalisation(x_all)
            rows = (x_all, y_all, row_owner, row_weights(plan_all, y_all))
            set_linear(model, logistic(model, x_all, y_all, fit["C"], rows[3]))
            fit["refit"] = {"clips": len(both), "speakers": len({(utts[i].corpus, utts[i].speaker) for i in both}),
                            "note": "refitted with the chosen C on training + validation clips; the temperature "
                                    "and the validation figures come from the head fitted before the refit"}
        # same-speaker adaptation's second head (serkit.speaker), on the rows the served head learnt
        x_rows, y_fit, who, weights = rows
        speaker = fit_speaker_head(standardiser(model)(x_rows), y_fit, np.array([utts[i].group for i in who]),
                                   fit["C"], weights, LINEAR_MAX_ITER)
        model.set_speaker_head(speaker.weight, speaker.bias, speaker.table)
        fit["speaker_head"] = "the same rows, weights and C, each speaker's rows centred (serkit.speaker)"
        return model, None, extra
    # an MLP head trains with Lightning; its validation scores clips as the scorer does

    def loader(part: str, train_: bool) -> DataLoader:
        if part == "val":
            return pool_loader(val.items([y[i] for i in sel["val"]]), sel["val"], train_, plan, cfg.batch_size,
                               cfg.seed, collate_fn=collate_units)
        ds = TensorDataset(torch.from_numpy(x_train), torch.zeros(len(owner), dtype=torch.long),
                           torch.from_numpy(y_rows))
        return pool_loader(ds, owner, train_, row_plan, cfg.batch_size, cfg.seed)

    return model, loader, {"encoder_cache": note}


def per_row(plan: PoolPlan, clips: list[int], owner: list[int]) -> PoolPlan:
    """``plan``, whose sample weights are given per clip of ``clips``, with one per feature row
    instead: row k weighs as clip ``owner[k]`` (a clip's views share its corpus weight)."""
    if plan.sample_weights is None:
        return plan
    at = {i: k for k, i in enumerate(clips)}
    return replace(plan, sample_weights=np.array([plan.sample_weights[at[i]] for i in owner]))


LINEAR_C = (0.001, 0.003, 0.01)
LINEAR_MAX_ITER = 1000   # L-BFGS iterations: the corpus-weighted fit on the pool did not converge in 300


class UnitFeatures:
    """Validation clips as :meth:`Scorer.analyse` reads them, through the cached encoder: each
    clip's units (speech detection, long speech split), each unit's windows, and the head's input
    features of every window (``x``), with the unit each window belongs to (``owner``)."""

    def __init__(self, scorer: Scorer, encoder: CachedEncoder, model: torch.nn.Module, waves: list[np.ndarray],
                 progress: bool = False):
        self.units = [scorer.units(np.asarray(w, np.float32))[0] for w in waves]
        pieces = [w[s:e] for w, clip in zip(waves, self.units) for s, e in clip]
        if not pieces:
            raise ValueError("no validation clip has speech: the head cannot be validated")
        rows, lengths, self.owner = scorer.cut(pieces)
        self.n_units = len(pieces)
        self.x = view_features(encoder, model, [r[:n] for r, n in zip(rows, lengths)], scorer.spec.window_samples,
                               progress, "encoding validation clips")

    def items(self, labels: list[int]) -> list[tuple]:
        """One :class:`serkit.data.UnitDataset`-style item per clip, with features in place of
        windows, for :func:`serkit.data.collate_units` (Lightning's validation scores them as
        the scorer does: serkit.val_metrics)."""
        out, first = [], np.cumsum([0, *map(len, self.units)])
        for k, (clip, label) in enumerate(zip(self.units, labels)):
            rows = np.flatnonzero((self.owner >= first[k]) & (self.owner < first[k + 1]))
            out.append((torch.from_numpy(self.x[rows]), torch.ones(len(rows), dtype=torch.long),
                        torch.from_numpy(self.owner[rows] - first[k]), clip, label))
        return out


def scored_validation(val: UnitFeatures):
    """A function giving each validation clip's probabilities under a head (None for a clip
    without speech), the clips scored as :meth:`Scorer.analyse` scores them at temperature 1
    (see :class:`UnitFeatures`): window logits averaged per unit, then the units' probabilities
    weighted by their durations. The head is given as ``log_proba(features) -> (windows,
    classes)`` (logits, or logits shifted by a per-window constant, which neither the unit mean
    nor the softmax sees)."""

    def probabilities(log_proba) -> list[np.ndarray | None]:
        return clip_probabilities(mean_by(log_proba(val.x), val.owner, val.n_units), val.units)[1]

    return probabilities


def validation_uar(probabilities, y_val: np.ndarray, judged: list[bool] | None = None):
    """UAR of :func:`scored_validation`'s answers over the ``judged`` clips (default all; see
    :func:`serkit.corpora.judged`); a clip without speech counts as wrong, as in
    :func:`serkit.evaluation.metrics`."""
    from sklearn.metrics import recall_score

    keep = np.ones(len(y_val), bool) if judged is None else np.asarray(judged, bool)

    def uar(log_proba) -> float:
        pred = np.array([-1 if h is None else int(np.argmax(h)) for h in probabilities(log_proba)])
        return float(recall_score(y_val[keep], pred[keep], labels=np.unique(y_val[keep]), average="macro"))

    return uar


def row_weights(plan: PoolPlan, y: np.ndarray) -> np.ndarray | None:
    """Per-row loss weights of a closed-form head (rows with labels ``y``; ``plan.sample_weights``
    given per row) as the pool ``plan`` weighs a Lightning model's loss: the row's corpus weight
    under corpus balancing times its class weight, scaled to mean 1 (so C keeps its meaning);
    None for no weighting at all."""
    if plan.sample_weights is None and plan.class_weights is None:
        return None
    w = np.ones(len(y)) if plan.sample_weights is None else np.asarray(plan.sample_weights, np.float64)
    if plan.class_weights is not None:
        w = w * plan.class_weights.numpy().astype(np.float64)[y]
    return w / w.mean()


def fit_linear_head(model: torch.nn.Module, x_train: np.ndarray, y_train: np.ndarray, val_uar,
                    sample_weight: np.ndarray | None = None) -> dict[str, Any]:
    """Fit a linear head (``head_hidden=0``, ``combine="concat"``) as an L2 logistic regression on
    the standardised features, its loss weighted per row by ``sample_weight`` (see
    :func:`row_weights`), with the inverse regularisation C chosen from :data:`LINEAR_C` by
    ``val_uar`` (see :func:`validation_uar`); the coefficients become the head's Linear layer."""
    n_classes = model.config.n_classes
    if len(np.unique(y_train)) < n_classes:
        raise ValueError("a linear head needs training clips of every class")
    z = standardiser(model)
    tried = {}
    best = None
    for c in LINEAR_C:
        clf = logistic(model, x_train, y_train, c, sample_weight)
        tried[c] = val_uar(lambda x, clf=clf: clf.predict_log_proba(z(x)))
        if best is None or tried[c] > tried[best[0]]:
            best = (c, clf)
    set_linear(model, best[1])
    return {"method": "scikit-learn LogisticRegression (L2, lbfgs)", "C": best[0],
            "val_uar_by_C": tried, "weighted": sample_weight is not None,
            "validation": "clips scored as the scorer scores them (serkit.scorer)"}


def standardiser(model: torch.nn.Module):
    """The head's input standardisation (its fitted feature mean and std), flattened per clip."""
    mean, std = model.feat_mean.numpy(), model.feat_std.numpy()
    return lambda x: ((x - mean) / std).reshape(len(x), -1)


def set_linear(model: torch.nn.Module, clf) -> None:
    """A fitted logistic regression's coefficients become the head's Linear layer."""
    linear = model.mlp[-1]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
        linear.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))


def logistic(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, c: float,
             sample_weight: np.ndarray | None = None):
    """An L2 logistic regression at inverse regularisation ``c`` on the head's standardised
    features ``x`` (its loss weighted per row by ``sample_weight``)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=LINEAR_MAX_ITER).fit(standardiser(model)(x), y, sample_weight=sample_weight)

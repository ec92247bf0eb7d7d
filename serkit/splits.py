"""Train / validation / test splits that keep speakers apart unless the user asks otherwise.

Protocols (``SPLITS``):

- ``speaker`` (default): speakers are groups, identified by (corpus, speaker); each group lands
  in exactly one part. Groups are assigned with scikit-learn's StratifiedGroupKFold on the
  label ``corpus|emotion``, so every part keeps roughly the emotion mix *and* the corpus mix.
  Corpora with very few speakers (TESS has 2, SAVEE 4) cannot be in all three parts: each of
  their speakers goes whole into one part, so such a corpus may be absent from the test part
  of a given seed. The split summary shows speakers per corpus per part, so this is visible.
  A split needs at least three speaker groups in all; clips whose speaker is ``unknown``
  (folder-per-emotion corpora) cannot be grouped and raise an error that suggests the ways out.
- ``random``: the original project's split, stratified by emotion over utterances. It is
  LEAKY: the same speakers are in train and test, which inflates every metric. It exists for
  comparison and has to be asked for by name.
- ``corpus``: leave one corpus out: ``test_corpus`` is the test part, validation is taken
  speaker-grouped from the other corpora.

A fixed ``seed`` gives the same split every time; validation is always disjoint from test.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from serkit.config import SPLITS  # one list, shared with the CLI
from serkit.manifest import Utterance, read_manifest

PARTS = ("train", "val", "test")


class SplitError(ValueError):
    """A split that cannot be made as asked; the message says why and what to do instead."""


def _strata(utts: list[Utterance]) -> np.ndarray:
    return np.array([f"{u.corpus}|{u.emotion}" for u in utts])


def _groups(utts: list[Utterance]) -> np.ndarray:
    unknown = sorted({u.corpus for u in utts if u.speaker in ("", "unknown")})
    if unknown:
        raise SplitError(
            f"corpus {', '.join(unknown)} has clips with no speaker, so a speaker-independent "
            "split is impossible; give speakers in a CSV (path, emotion, speaker) or ask for the "
            "leaky utterance split with --split random")
    return np.array([u.group for u in utts])


def _too_few(what: str, labels: np.ndarray, groups: np.ndarray | None = None) -> SplitError:
    """The error for a split scikit-learn cannot make: the smallest classes, and what to do."""
    counts = Counter(labels.tolist())
    fewest = ", ".join(f"{k.split('|')[-1] if groups is None else k} {n}" for k, n in
                       sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:3])
    speakers = "" if groups is None else f" from {len(set(groups.tolist()))} speakers"
    return SplitError(
        f"{what}: too few clips{speakers} to split as asked (fewest clips per "
        f"{'emotion' if groups is None else 'corpus|emotion'}: {fewest}); every emotion needs clips in each "
        "part. Add clips or speakers, leave rare emotions out (--emotions), or change --test-size/--val-size")


def _group_holdout(idx: np.ndarray, utts: list[Utterance], fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, held) with about ``fraction`` of the speaker groups held out."""
    sub = [utts[i] for i in idx]
    groups = _groups(sub)
    n_groups = len(set(groups))
    n_splits = max(2, min(n_groups, round(1 / fraction)))
    if n_groups < 2:
        raise SplitError(f"only {n_groups} speaker(s) left to split; a speaker-independent split "
                         "needs at least 3 speakers in all (or use --split random)")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    try:
        folds = list(cv.split(np.zeros(len(sub)), _strata(sub), groups))
    except ValueError:
        raise _too_few("speaker-independent split", _strata(sub), groups) from None
    # The shuffle only breaks ties between equally mixed speakers, so with uneven speakers every
    # seed gives the same folds: the seed also picks which fold is held out.
    rest, held = folds[int(np.random.default_rng(seed).integers(n_splits))]
    return idx[rest], idx[held]


def split(utts: list[Utterance], protocol: str = "speaker", *, test_size: float = 0.2,
          val_size: float = 0.15, seed: int = 0, test_corpus: str | None = None) -> list[str]:
    """The part (``train``/``val``/``test``) of each utterance, in order.

    If every utterance already carries a ``split`` (a manifest that fixes its own split), that is
    returned unchanged. ``test_size`` and ``val_size`` are shares of the whole set; with speaker
    grouping they are met as closely as whole speakers allow.
    """
    if utts and all(u.split in PARTS for u in utts):
        return [u.split for u in utts]
    if protocol not in SPLITS:
        raise SplitError(f"unknown split {protocol!r}; choose one of: {', '.join(SPLITS)}")
    if not 0 < test_size < 1 or not 0 < val_size < 1 or test_size + val_size >= 1:
        raise SplitError(f"test_size ({test_size}) and val_size ({val_size}) must be in (0, 1) "
                         "and leave something to train on")
    idx = np.arange(len(utts))
    parts = np.array(["train"] * len(utts), dtype=object)
    if protocol == "random":
        labels = np.array([u.emotion for u in utts])
        try:
            rest, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
            train, val = train_test_split(rest, test_size=val_size / (1 - test_size),
                                          stratify=labels[rest], random_state=seed)
        except ValueError:
            raise _too_few("random split", labels) from None
    elif protocol == "corpus":
        corpora = sorted({u.corpus for u in utts})
        if test_corpus not in corpora:
            raise SplitError(f"--split corpus needs --test-corpus, one of: {', '.join(corpora)}")
        if len(corpora) < 2:
            raise SplitError("leave-one-corpus-out needs at least two corpora in the manifest")
        test = idx[[u.corpus == test_corpus for u in utts]]
        others = idx[[u.corpus != test_corpus for u in utts]]
        train, val = _group_holdout(others, utts, val_size / (1 - test_size), seed)
    else:
        if len(set(_groups(utts))) < 3:
            raise SplitError("a speaker-independent split needs at least 3 speakers "
                             f"(this set has {len(set(_groups(utts)))}); use --split random")
        rest, test = _group_holdout(idx, utts, test_size, seed)
        train, val = _group_holdout(rest, utts, val_size / (1 - test_size), seed)
    parts[test] = "test"
    parts[val] = "val"
    return list(parts)


def speaker_folds(utts: list[Utterance], k: int = 5, *, val_size: float = 0.15,
                  seed: int = 0) -> Iterator[list[str]]:
    """k-fold speaker-grouped cross-validation: for each fold, the part of each utterance.

    Each fold's test part is one k-th of the speakers; its validation part (for early stopping)
    is drawn speaker-grouped from the remaining speakers, never from the test fold.
    """
    groups = _groups(utts)
    if len(set(groups)) < k + 1:
        raise SplitError(f"{k}-fold speaker CV needs more than {k} speakers; found {len(set(groups))}")
    idx = np.arange(len(utts))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        folds = list(cv.split(idx, _strata(utts), groups))
    except ValueError:
        raise _too_few(f"{k}-fold speaker CV", _strata(utts), groups) from None
    for rest, test in folds:
        train, val = _group_holdout(rest, utts, val_size / (1 - 1 / k), seed)
        parts = np.array(["train"] * len(utts), dtype=object)
        parts[test], parts[val] = "test", "val"
        yield list(parts)


def summarize(utts: list[Utterance], parts: list[str]) -> dict[str, dict[str, int]]:
    """Per part: clips, speakers, and clips per corpus (what a split summary table shows)."""
    out: dict[str, dict[str, int]] = {}
    for part in PARTS:
        sel = [u for u, p in zip(utts, parts) if p == part]
        row: dict[str, int] = {"clips": len(sel), "speakers": len({u.group for u in sel})}
        row.update({f"clips:{c}": n for c, n in sorted(Counter(u.corpus for u in sel).items())})
        row.update({f"speakers:{c}": len({u.speaker for u in sel if u.corpus == c})
                    for c in sorted({u.corpus for u in sel})})
        out[part] = row
    return out


def split_for(utts: list[Utterance], cfg) -> list[str]:
    """The parts of ``utts`` as ``serkit train`` makes them for ``cfg`` (a TrainConfig): its
    protocol and sizes, seeded with ``split_seed`` when given, else ``seed``."""
    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    return split(utts, cfg.split, test_size=cfg.test_size, val_size=cfg.val_size, seed=seed,
                 test_corpus=cfg.test_corpus)


def check_same_split(out: Path, manifest, utts: list[Utterance], parts: list[str]) -> None:
    """A resumed run goes on with the clips and split it started with (its split.csv), or not at all."""
    before = {(str(Path(u.path).resolve()), u.split) for u in read_manifest(out / "split.csv")}
    now = {(str(Path(u.path).resolve()), p) for u, p in zip(utts, parts)}
    if before != now:
        name = "the clips given" if isinstance(manifest, list) else manifest
        raise ValueError(f"{name}: not the clips and split {out} was trained on ({len(before)} clips in its "
                         f"split.csv, {len(now)} here, {len(before ^ now)} differing): --resume continues a run "
                         "on its own data; pass its manifest, or start over with --force")

"""Speaker-independent, random and leave-one-corpus-out splits, and speaker-grouped k-fold CV."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from serkit.emotions import DEFAULT_EMOTIONS
from serkit.manifest import Utterance, read_manifest, with_split, write_manifest
from serkit.splits import PARTS, SplitError, speaker_folds, split, summarize


def make_utts(n_speakers: int = 24, corpus: str = "a", seed: int = 0,
              emotions=DEFAULT_EMOTIONS, low: int = 3, high: int = 9) -> list[Utterance]:
    """Speakers with an uneven number of clips per emotion (between ``low`` and ``high``-1)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_speakers):
        for e in emotions:
            for k in range(int(rng.integers(low, high))):
                out.append(Utterance(corpus, f"{s:02d}", e, Path(f"/data/{corpus}/{s:02d}/{e}_{k}.wav")))
    return out


@pytest.fixture
def two_corpora() -> list[Utterance]:
    # speaker ids 00..11 exist in both corpora: they are different people
    return make_utts(24, "a", seed=0) + make_utts(12, "b", seed=1)


def groups_by_part(utts, parts) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for u, p in zip(utts, parts):
        out[p].add(u.group)
    return out


def assert_speaker_disjoint(utts, parts) -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for u, p in zip(utts, parts):
        where[(u.corpus, u.speaker)].add(p)
    shared = {g: ps for g, ps in where.items() if len(ps) > 1}
    assert not shared, f"speakers in more than one part: {shared}"


def emotion_shares(utts, parts, part=None) -> dict[str, float]:
    sel = [u for u, p in zip(utts, parts) if part is None or p == part]
    c = Counter(u.emotion for u in sel)
    return {e: c[e] / len(sel) for e in DEFAULT_EMOTIONS}


# --------------------------------------------------------------------------- speaker split

def test_speaker_split_keeps_speakers_apart(two_corpora):
    parts = split(two_corpora, "speaker", seed=0)
    assert len(parts) == len(two_corpora) and set(parts) == set(PARTS)
    assert_speaker_disjoint(two_corpora, parts)
    # groups are (corpus, speaker): the same id in two corpora is two speakers
    assert len({u.group for u in two_corpora}) == 36


@pytest.mark.parametrize("seed", range(6))
def test_speaker_split_sizes_and_emotion_mix(two_corpora, seed):
    utts = two_corpora
    parts = split(utts, "speaker", seed=seed)
    assert_speaker_disjoint(utts, parts)
    share = Counter(parts)
    assert share["test"] / len(utts) == pytest.approx(0.20, abs=0.06)
    assert share["val"] / len(utts) == pytest.approx(0.15, abs=0.06)
    overall = emotion_shares(utts, parts)
    for part in PARTS:
        got = emotion_shares(utts, parts, part)
        for e in DEFAULT_EMOTIONS:
            assert got[e] == pytest.approx(overall[e], abs=0.06), (part, e)
    # both corpora are in every part (each has enough speakers)
    for part in PARTS:
        assert {u.corpus for u, p in zip(utts, parts) if p == part} == {"a", "b"}


def test_speaker_split_is_deterministic_and_seeded(two_corpora):
    a = split(two_corpora, seed=0)
    assert split(two_corpora, seed=0) == a
    assert split(list(two_corpora), "speaker", seed=0) == a
    others = {tuple(split(two_corpora, seed=s)) for s in range(1, 8)}
    assert any(o != tuple(a) for o in others), "the seed does not change the split"
    assert len(others | {tuple(a)}) >= 3
    # a different seed moves whole speakers, never splits them
    for o in others:
        assert_speaker_disjoint(two_corpora, o)


def test_speaker_split_seed_matters_for_balanced_speakers():
    utts = make_utts(20, low=5, high=6)  # every speaker has exactly 5 clips per emotion
    assert split(utts, seed=3) == split(utts, seed=3)
    assert split(utts, seed=3) != split(utts, seed=4)


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_speaker_split_small_corpus_speakers_go_whole(two_corpora):
    tess = make_utts(2, "tess", seed=5)
    utts = two_corpora + tess
    for seed in range(4):
        parts = split(utts, seed=seed)
        assert_speaker_disjoint(utts, parts)
        tess_parts = [{p for u, p in zip(utts, parts) if u.corpus == "tess" and u.speaker == s}
                      for s in ("00", "01")]
        assert all(len(ps) == 1 for ps in tess_parts)


def test_speaker_split_needs_three_speakers():
    with pytest.raises(SplitError, match=r"at least 3 speakers \(this set has 2\).*--split random"):
        split(make_utts(2), "speaker")
    split(make_utts(2), "random")  # the leaky split still works
    parts = split(make_utts(3), "speaker")
    assert_speaker_disjoint(make_utts(3), parts)
    assert len(groups_by_part(make_utts(3), parts)) == 3


@pytest.mark.parametrize("speaker", ["unknown", ""])
def test_unknown_speakers_refuse_a_speaker_split(two_corpora, speaker):
    folder = [Utterance("folder", speaker, e, Path(f"/f/{e}/{k}.wav"))
              for e in DEFAULT_EMOTIONS for k in range(10)]
    for call in (lambda: split(two_corpora + folder, "speaker"),
                 lambda: split(folder + two_corpora, "corpus", test_corpus="a"),
                 lambda: next(speaker_folds(two_corpora + folder, k=3))):
        with pytest.raises(SplitError) as info:
            call()
        msg = str(info.value)
        assert "corpus folder" in msg and "no speaker" in msg and "--split random" in msg
    # the random split does not need speakers
    parts = split(folder, "random", seed=0)
    assert Counter(parts) == {"train": 39, "val": 9, "test": 12}


def test_bad_arguments():
    utts = make_utts(6)
    with pytest.raises(SplitError, match="unknown split 'speakers'; choose one of: speaker, random, corpus"):
        split(utts, "speakers")
    for test_size, val_size in [(0, 0.1), (0.2, 1.0), (0.5, 0.5), (-0.1, 0.2)]:
        with pytest.raises(SplitError, match="must be in"):
            split(utts, test_size=test_size, val_size=val_size)


def test_split_error_is_a_value_error():
    # the CLI turns ValueErrors into a one-line message with exit status 2
    assert issubclass(SplitError, ValueError)


# --------------------------------------------------------------------------- random split

def test_random_split_is_stratified_and_leaky(two_corpora):
    utts = two_corpora
    parts = split(utts, "random", seed=0)
    n = len(utts)
    share = Counter(parts)
    assert share["test"] == pytest.approx(0.2 * n, abs=2)
    assert share["val"] == pytest.approx(0.15 * n, abs=2)
    overall = emotion_shares(utts, parts)
    for part in PARTS:
        got = emotion_shares(utts, parts, part)
        for e in DEFAULT_EMOTIONS:
            assert got[e] == pytest.approx(overall[e], abs=0.015), (part, e)
    # utterances of one speaker land in several parts: the leak the speaker split prevents
    where: dict[str, set[str]] = defaultdict(set)
    for u, p in zip(utts, parts):
        where[u.group].add(p)
    assert sum(len(ps) > 1 for ps in where.values()) > len(where) // 2
    assert split(utts, "random", seed=0) == parts
    assert split(utts, "random", seed=1) != parts


# --------------------------------------------------------------------------- corpus split

def test_leave_one_corpus_out(two_corpora):
    utts = two_corpora + make_utts(8, "c", seed=2)
    parts = split(utts, "corpus", test_corpus="b", seed=0)
    assert [p == "test" for p in parts] == [u.corpus == "b" for u in utts]
    assert_speaker_disjoint(utts, parts)
    rest = [(u, p) for u, p in zip(utts, parts) if u.corpus != "b"]
    assert {p for _, p in rest} == {"train", "val"}
    val_share = sum(p == "val" for _, p in rest) / len(rest)
    assert val_share == pytest.approx(0.15 / 0.8, abs=0.08)
    assert split(utts, "corpus", test_corpus="b", seed=0) == parts


def test_corpus_split_errors(two_corpora):
    with pytest.raises(SplitError, match="--split corpus needs --test-corpus, one of: a, b"):
        split(two_corpora, "corpus")
    with pytest.raises(SplitError, match="one of: a, b"):
        split(two_corpora, "corpus", test_corpus="tess")
    with pytest.raises(SplitError, match="at least two corpora"):
        split(make_utts(6, "a"), "corpus", test_corpus="a")


# --------------------------------------------------------------------------- k-fold CV

@pytest.mark.parametrize("k", [3, 5])
def test_speaker_folds(two_corpora, k):
    utts = two_corpora
    folds = list(speaker_folds(utts, k=k, seed=0))
    assert len(folds) == k
    test_count = np.zeros(len(utts), int)
    test_groups = []
    for parts in folds:
        assert len(parts) == len(utts) and set(parts) == set(PARTS)
        test_count += np.array([p == "test" for p in parts])
        assert_speaker_disjoint(utts, parts)  # val and train disjoint from test, by speaker
        g = groups_by_part(utts, parts)
        assert g["val"].isdisjoint(g["test"]) and g["train"].isdisjoint(g["test"])
        test_groups.append(g["test"])
    assert (test_count == 1).all(), "every utterance is tested exactly once"
    # the test folds partition the speakers, about evenly
    all_groups = {u.group for u in utts}
    assert set().union(*test_groups) == all_groups
    assert sum(len(t) for t in test_groups) == len(all_groups)
    assert max(len(t) for t in test_groups) - min(len(t) for t in test_groups) <= 3
    assert list(map(tuple, speaker_folds(utts, k=k, seed=0))) == list(map(tuple, folds))


def test_speaker_folds_need_more_speakers_than_folds():
    with pytest.raises(SplitError, match="5-fold speaker CV needs more than 5 speakers; found 5"):
        next(speaker_folds(make_utts(5), k=5))
    assert len(list(speaker_folds(make_utts(6), k=5))) == 5


# --------------------------------------------------------------------------- fixed splits

def test_manifest_split_column_is_respected(tmp_path):
    utts = make_utts(4) + [Utterance("folder", "unknown", "sad", Path("/f/sad/1.wav"))]
    fixed = ["test" if i % 3 == 0 else "val" if i % 3 == 1 else "train" for i in range(len(utts))]
    write_manifest(with_split(utts, fixed), tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert [u.split for u in back] == fixed
    # returned unchanged whatever the protocol, even with speakers a speaker split would refuse
    assert split(back) == fixed
    assert split(back, "random", seed=5) == fixed
    assert split(back, "corpus") == fixed


def test_manifest_split_column_is_read_case_insensitively(tmp_path):
    (tmp_path / "m.csv").write_text(
        "Dataset,Emotion,File,Speaker,Split\n"
        "x,angry,a.wav,1, Train\nx,sad,b.wav,2,VAL\nx,happy,c.wav,3,test\n")
    assert split(read_manifest(tmp_path / "m.csv")) == ["train", "val", "test"]


def test_partial_split_column_is_recomputed(two_corpora):
    utts = with_split(two_corpora, ["test"] * 10 + [""] * (len(two_corpora) - 10))
    parts = split(utts, seed=0)
    assert parts == split(two_corpora, seed=0)
    assert_speaker_disjoint(utts, parts)


def test_summarize(two_corpora):
    parts = split(two_corpora, seed=0)
    table = summarize(two_corpora, parts)
    assert list(table) == list(PARTS)
    assert sum(table[p]["clips"] for p in PARTS) == len(two_corpora)
    assert sum(table[p]["speakers"] for p in PARTS) == 36  # disjoint, so the counts add up
    for p in PARTS:
        sel = [u for u, q in zip(two_corpora, parts) if q == p]
        assert table[p]["clips:a"] == sum(u.corpus == "a" for u in sel)
        assert table[p]["speakers:b"] == len({u.speaker for u in sel if u.corpus == "b"})

"""The readers (and the web timeline) on the real corpora in ../shared/corpora (RAVDESS speech subset,
EmoDB, nEMO and ASED, the last two in Ogg Vorbis).

Skipped when that folder is absent. The readers only read file names and headers, and the timeline
test decodes four clips, so this stays fast.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from serkit import corpora
from serkit.emotions import DEFAULT_EMOTIONS
from serkit.manifest import SkipReport
from serkit.prepare import prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent"),
]

SIX = {
    "emodb": {"angry": 127, "disgust": 46, "fearful": 69, "happy": 71, "neutral": 79, "sad": 62},
    "ravdess": {"angry": 160, "disgust": 160, "fearful": 159, "happy": 159, "neutral": 80, "sad": 160},
    "nemo": {"angry": 749, "disgust": 0, "fearful": 736, "happy": 749, "neutral": 809, "sad": 769},
    "ased": {"angry": 386, "disgust": 0, "fearful": 410, "happy": 386, "neutral": 426, "sad": 366},
}
#: Files beside the clips that are not audio: the corpora's own documents.
DOCUMENTS = {"README.md", "nemo/LICENSE", "nemo/README.md", "ased/README.md"}


@pytest.fixture(scope="module")
def every():
    result = prepare([SHARED], emotions="all")  # what `serkit prepare --emotions all` reads
    return result.utterances, result.skipped


def test_detected_without_flags():
    report = SkipReport()
    assert corpora.find_corpora(SHARED, report) == [
        ("ased", SHARED / "ased"), ("emodb", SHARED / "emodb"), ("nemo", SHARED / "nemo"),
        ("ravdess", SHARED / "ravdess")]
    # only the README lies outside the corpora
    assert {(c, r) for c, r, _ in report.items} <= {("unrecognised", "not audio")}
    assert all(p.name == "README.md" for _, _, p in report.items)


def test_all_emotions(every):
    utts, report = every
    assert Counter(u.corpus for u in utts) == {"ravdess": 1194, "emodb": 535, "nemo": 4481, "ased": 1974}
    # nothing but the documents is left out: nEMO's data.tsv is read, and agrees with its files
    assert {p.relative_to(SHARED).as_posix() for _, _, p in report.items} <= DOCUMENTS
    assert {r for _, r, _ in report.items} <= {"not audio"}
    assert {u.speaker for u in utts if u.corpus == "ravdess"} == {f"{a:02d}" for a in range(1, 21)}
    assert len({u.speaker for u in utts if u.corpus == "emodb"}) == 10
    assert len({u.speaker for u in utts if u.corpus == "nemo"}) == 9
    assert len({u.speaker for u in utts if u.corpus == "ased"}) == 57
    assert len({u.group for u in utts}) == 96
    for u in utts:
        if u.corpus == "ravdess":
            assert u.gender == ("male" if int(u.speaker) % 2 else "female")
        else:
            assert u.gender in ("male", "female")
        assert u.sample_rate == 16000
        assert u.path.suffix == (".ogg" if u.corpus in ("nemo", "ased") else ".wav")
    for corpus in ("emodb", "ased"):  # both were cut or padded to 2.00 s
        assert {round(u.duration, 2) for u in utts if u.corpus == corpus} == {2.0}
    # EmoDB documentation: speakers 03 10 11 12 15 are male, 08 09 13 14 16 female
    assert {u.speaker: u.gender for u in utts if u.corpus == "emodb"} == {
        **dict.fromkeys(("03", "10", "11", "12", "15"), "male"),
        **dict.fromkeys(("08", "09", "13", "14", "16"), "female")}


def test_default_six_emotions():
    report = SkipReport()
    utts = corpora.scan(SHARED, emotions=DEFAULT_EMOTIONS, report=report)
    counts = Counter((u.corpus, u.emotion) for u in utts)
    assert {c: {e: counts[(c, e)] for e in DEFAULT_EMOTIONS} for c in SIX} == SIX
    assert Counter(u.corpus for u in utts) == {"emodb": 454, "ravdess": 878, "nemo": 3812, "ased": 1974}
    assert len({u.group for u in utts}) == 96
    skipped = report.counts()
    # what the six leave out is "emotion not selected": RAVDESS calm + surprised, EmoDB boredom,
    # nEMO surprised
    assert skipped[("ravdess", "emotion not selected")] == 1194 - 878
    assert skipped[("emodb", "emotion not selected")] == 535 - 454
    assert skipped[("nemo", "emotion not selected")] == 4481 - 3812


def test_web_timeline_finds_the_utterances_of_a_real_recording():
    """Four RAVDESS utterances joined by 2 s of silence, posted to the web API with the shipped
    model: silero finds one speech segment per utterance, inside it, and none in the pauses."""
    import io

    import numpy as np
    import soundfile as sf
    pytest.importorskip("silero_vad")

    from serkit.audio import load_audio
    from serkit.web import create_app

    files = sorted((SHARED / "ravdess").rglob("03-01-0[1-5]-01-01-01-03.wav"))[:4]
    assert len(files) == 4
    parts, spans, t = [], [], 0.0
    for f in files:
        wave = load_audio(f)
        parts += [wave, np.zeros(32000, np.float32)]
        spans.append((t, t + len(wave) / 16000))
        t += len(wave) / 16000 + 2.0
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(parts), 16000, format="WAV")
    client = create_app({"TESTING": True}).test_client()
    body = client.post("/api/predict", data={"file": (io.BytesIO(buf.getvalue()), "joined.wav")},
                       content_type="multipart/form-data").get_json()
    assert body["vad"] == "silero"
    segments = body["timeline"]
    assert len(segments) == len(spans)
    for seg, (start, end) in zip(segments, spans):
        assert start - 0.15 <= seg["start"] < seg["end"] <= end + 0.15   # RAVDESS clips open with ~1 s of silence
        assert seg["end"] - seg["start"] > 0.8 and seg["emotion"] in body["probabilities"]


def test_nemo_and_ased_details(every):
    utts, _ = every
    nemo = [u for u in utts if u.corpus == "nemo"]
    # genders from data.tsv (speaker_id left-padded there); 90 sentences, each in every emotion
    assert {u.speaker: u.gender for u in nemo} == {
        **dict.fromkeys(("EB0", "IC0", "KD0", "MK0"), "female"),
        **dict.fromkeys(("KS0", "MP0", "SM0", "TP0", "WR0"), "male")}
    assert len({u.sentence for u in nemo}) == 90
    assert Counter(u.emotion for u in nemo)["surprised"] == 669
    ased = [u for u in utts if u.corpus == "ased"]
    # one gender per speaker, although the gender field disagrees for a file of 09, 15, 21, 23, 25
    genders = {}
    for u in ased:
        genders.setdefault(u.speaker, set()).add(u.gender)
    assert all(len(g) == 1 for g in genders.values())
    assert {s: g.pop() for s, g in genders.items() if s in ("09", "15", "21", "23", "25")} == dict.fromkeys(
        ("09", "15", "21", "23", "25"), "female")
    # the common sentences 01-02, on which ASED is judged
    sentences = Counter(u.sentence for u in ased)
    assert sentences["01"] == sentences["02"] == 262
    assert sum(n for s, n in sentences.items() if s not in ("01", "02")) == 1974 - 524


@pytest.fixture(scope="module")
def six():
    return corpora.scan(SHARED, emotions=DEFAULT_EMOTIONS)


@pytest.mark.parametrize("corpus", ["ased", "emodb", "nemo", "ravdess"])
def test_leave_one_corpus_out_split_of_the_pool(six, corpus):
    """``--split corpus --test-corpus NAME`` on the pool's default-six manifest (the split alone)."""
    from serkit.splits import split

    utts = six
    parts = split(utts, "corpus", test_corpus=corpus, seed=0)
    assert [p == "test" for p in parts] == [u.corpus == corpus for u in utts]
    groups = {p: {u.group for u, q in zip(utts, parts) if q == p} for p in ("train", "val")}
    assert groups["train"] and groups["val"] and not groups["train"] & groups["val"]
    # every one of the six is still taught: disgust comes from RAVDESS or EmoDB, whichever stays
    assert {u.emotion for u, p in zip(utts, parts) if p == "train"} == set(DEFAULT_EMOTIONS)


def test_cut_clips_silero_misses_at_first_are_heard_at_the_second_look():
    """ASED's clips are cut to 2 s, often at the first syllable: silero, starting cold, hears no
    speech in some of them at its own threshold; the scorer's second look (silence before the
    clip, a lower threshold) finds the speech in nearly all of them, inside the clip."""
    from serkit.audio import load_audio
    from serkit.vad import clip_speech, detect_speech

    files = sorted((SHARED / "ased").rglob("*.ogg"))[::5]   # every emotion
    missed = [w for w in (load_audio(f) for f in files) if not detect_speech(w, 16000, "silero")]
    assert len(missed) >= 5
    found = [clip_speech(w, 16000, "silero") for w in missed]
    assert sum(bool(f) for f in found) >= 0.8 * len(missed)
    assert all(0 <= s < e <= len(w) for w, f in zip(missed, found) for s, e in f)

"""The readers (and the web timeline) on the real corpora in ../shared/corpora (RAVDESS speech subset and EmoDB).

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
}


@pytest.fixture(scope="module")
def every():
    result = prepare([SHARED], emotions="all")  # what `serkit prepare --emotions all` reads
    return result.utterances, result.skipped


def test_detected_without_flags():
    report = SkipReport()
    assert corpora.find_corpora(SHARED, report) == [("emodb", SHARED / "emodb"),
                                                    ("ravdess", SHARED / "ravdess")]
    # only the README lies outside the corpora
    assert {(c, r) for c, r, _ in report.items} <= {("unrecognised", "not audio")}
    assert all(p.name == "README.md" for _, _, p in report.items)


def test_all_emotions(every):
    utts, report = every
    assert Counter(u.corpus for u in utts) == {"ravdess": 1194, "emodb": 535}
    assert len(report) <= 1  # README.md at the top, nothing else
    assert {u.speaker for u in utts if u.corpus == "ravdess"} == {f"{a:02d}" for a in range(1, 21)}
    assert len({u.speaker for u in utts if u.corpus == "emodb"}) == 10
    assert len({u.group for u in utts}) == 30
    for u in utts:
        if u.corpus == "ravdess":
            assert u.gender == ("male" if int(u.speaker) % 2 else "female")
        else:
            assert u.gender in ("male", "female")
        assert u.sample_rate == 16000
    emodb_dur = {round(u.duration, 2) for u in utts if u.corpus == "emodb"}
    assert emodb_dur == {2.0}
    # EmoDB documentation: speakers 03 10 11 12 15 are male, 08 09 13 14 16 female
    assert {u.speaker: u.gender for u in utts if u.corpus == "emodb"} == {
        **dict.fromkeys(("03", "10", "11", "12", "15"), "male"),
        **dict.fromkeys(("08", "09", "13", "14", "16"), "female")}


def test_default_six_emotions():
    report = SkipReport()
    utts = corpora.scan(SHARED, emotions=DEFAULT_EMOTIONS, report=report)
    counts = Counter((u.corpus, u.emotion) for u in utts)
    assert {c: {e: counts[(c, e)] for e in DEFAULT_EMOTIONS} for c in SIX} == SIX
    assert Counter(u.corpus for u in utts) == {"emodb": 454, "ravdess": 878}
    assert len({u.group for u in utts}) == 30
    skipped = report.counts()
    # what the six leave out is "emotion not selected": RAVDESS calm + surprised, EmoDB boredom
    assert skipped[("ravdess", "emotion not selected")] == 1194 - 878
    assert skipped[("emodb", "emotion not selected")] == 535 - 454


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

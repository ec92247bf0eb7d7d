"""Corpus readers, detection, skip accounting, emotion selection, the manifest and ``serkit prepare``."""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fixtures import (
    EMPTY, MISSING, NO_CORPUS, NOT_AUDIO, NOT_SELECTED, SONG, UNKNOWN_LABEL, UNPARSED,
    UNREADABLE, Expected, build_ased, build_cremad, build_csvlist, build_emodb, build_folder,
    build_nemo, build_ravdess, build_savee, build_tess, write_wav,
)
from serkit import corpora
from serkit.cli import main
from serkit.corpora import ased, cremad, emodb, folder, nemo, ravdess, savee, tess
from serkit.emotions import ALL_EMOTIONS, DEFAULT_EMOTIONS, resolve_emotions
from serkit.manifest import COLUMNS, SkipReport, Utterance, read_manifest, write_manifest
from serkit.prepare import prepare


def assert_matches(utts: list[Utterance], exp: Expected, emotions=ALL_EMOTIONS) -> None:
    """The readers' utterances are exactly the expected clips, field by field."""
    want = {c.path: c for c in exp.kept(emotions)}
    got = {Path(u.path): u for u in utts}
    assert len(got) == len(utts), "a clip was listed twice"
    assert set(got) == set(want)
    for path, u in got.items():
        c = want[path]
        assert (u.corpus, u.speaker, u.emotion, u.label, u.gender, u.sentence) == (
            c.corpus, c.speaker, c.emotion, c.label, c.gender, c.sentence), path
        assert u.duration == pytest.approx(c.duration, abs=1e-9), path
        assert u.sample_rate == c.sample_rate, path
        assert u.split == ""
    assert Counter((u.corpus, u.emotion) for u in utts) == exp.counts(emotions)


def scan_one(module, root, emotions=ALL_EMOTIONS):
    report = SkipReport()
    return module.scan(root, emotions=emotions, report=report), report


# --------------------------------------------------------------------------- one reader at a time

def test_ravdess_reader(tmp_path):
    exp = build_ravdess(tmp_path / "rav")
    utts, report = scan_one(ravdess, tmp_path / "rav")
    assert_matches(utts, exp)
    # 4 actors x (8 emotions + a second angry clip); the song clip is skipped as such
    assert len(utts) == 36
    assert Counter(u.emotion for u in utts) == {
        "neutral": 4, "calm": 4, "happy": 4, "sad": 4, "angry": 8,
        "fearful": 4, "disgust": 4, "surprised": 4}
    assert {u.speaker for u in utts} == {"01", "02", "03", "04"}
    assert {u.speaker: u.gender for u in utts} == {
        "01": "male", "02": "female", "03": "male", "04": "female"}
    assert {u.sample_rate for u in utts} == {48000}
    assert sorted({round(u.duration, 4) for u in utts}) == [0.25, 0.3, 0.35, 0.4]
    assert report.counts() == {("ravdess", SONG): 1}
    assert report.items[0][2].name == "03-02-05-01-01-01-01.wav"


def test_ravdess_skips_audio_visual_and_odd_names(tmp_path):
    root = tmp_path / "rav"
    write_wav(root / "Actor_01" / "03-01-05-01-01-01-01.wav")
    write_wav(root / "Actor_01" / "01-01-05-01-01-01-01.wav")   # audio-visual modality
    write_wav(root / "Actor_01" / "03-01-05-01-01-01.wav")      # six fields
    write_wav(root / "Actor_01" / "03-01-09-01-01-01-01.wav")   # emotion code 09
    utts, report = scan_one(ravdess, root)
    assert [u.path.name for u in utts] == ["03-01-05-01-01-01-01.wav"]
    assert report.counts() == {("ravdess", "not audio-only speech"): 1,
                               ("ravdess", UNPARSED): 1, ("ravdess", UNKNOWN_LABEL): 1}


def test_cremad_reader_with_demographics(tmp_path):
    exp = build_cremad(tmp_path / "crema")
    utts, report = scan_one(cremad, tmp_path / "crema")
    assert_matches(utts, exp)
    assert len(utts) == 25
    assert Counter(u.emotion for u in utts) == {
        "angry": 5, "disgust": 4, "fearful": 4, "happy": 4, "neutral": 4, "sad": 4}
    assert {u.speaker: u.gender for u in utts} == {
        "1001": "male", "1002": "female", "1003": "male", "1004": "unknown"}
    assert {u.label for u in utts} == {"ANG", "DIS", "FEA", "HAP", "NEU", "SAD"}
    # the demographics table is read, not reported as a stray
    assert report.counts() == {("cremad", UNPARSED): 1, ("cremad", UNKNOWN_LABEL): 1}


def test_cremad_demographics_found_from_the_audio_folder(tmp_path):
    exp = build_cremad(tmp_path / "crema")
    utts, _ = scan_one(cremad, tmp_path / "crema" / "AudioWAV")  # the table is one level up
    assert_matches(utts, exp)
    assert {u.gender for u in utts if u.speaker == "1002"} == {"female"}


def test_cremad_without_demographics_genders_unknown(tmp_path):
    exp = build_cremad(tmp_path / "crema", demographics=False)
    utts, _ = scan_one(cremad, tmp_path / "crema")
    assert_matches(utts, exp)
    assert {u.gender for u in utts} == {"unknown"}


def test_tess_reader_uneven_folders(tmp_path):
    exp = build_tess(tmp_path / "tess")
    utts, report = scan_one(tess, tmp_path / "tess")
    assert_matches(utts, exp)
    assert len(utts) == 42
    assert Counter(u.emotion for u in utts) == {e: 6 for e in (
        "angry", "disgust", "fearful", "happy", "neutral", "surprised", "sad")}
    assert {u.speaker for u in utts} == {"OAF", "YAF"}
    assert {u.gender for u in utts} == {"female"}
    by_name = {u.path.name: u for u in utts}
    assert (by_name["YAF_dog_ps.wav"].emotion, by_name["YAF_dog_ps.wav"].label) == ("surprised", "ps")
    assert by_name["OAF_bite_fear.wav"].path.parent.name == "OAF_Fear"
    assert by_name["OAF_bite_fear.wav"].emotion == "fearful"
    assert by_name["OAF_back_angry.wav"].emotion == "angry"
    assert len(report) == 0
    # default six: the 6 pleasant-surprise clips are "emotion not selected"
    utts6, report6 = scan_one(tess, tmp_path / "tess", DEFAULT_EMOTIONS)
    assert len(utts6) == 36
    assert report6.counts() == {("tess", NOT_SELECTED): 6}


@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_savee_reader_both_layouts(tmp_path, layout):
    exp = build_savee(tmp_path / "savee", layout=layout)
    utts, report = scan_one(savee, tmp_path / "savee")
    assert_matches(utts, exp)
    assert len(utts) == 32
    assert Counter(u.emotion for u in utts) == {
        "angry": 4, "disgust": 4, "fearful": 4, "happy": 4, "neutral": 8, "sad": 4, "surprised": 4}
    assert {u.speaker for u in utts} == {"DC", "JE", "JK", "KL"}
    assert {u.gender for u in utts} == {"male"}
    assert {u.label for u in utts} == {"a", "d", "f", "h", "n", "sa", "su"}
    assert {u.sample_rate for u in utts} == {44100}
    assert len(report) == 0
    found = corpora.find_corpora(tmp_path / "savee")
    assert found == [("savee", tmp_path / "savee")]


def test_savee_bare_names_need_a_speaker_folder(tmp_path):
    write_wav(tmp_path / "XX" / "a01.wav")
    write_wav(tmp_path / "DC" / "a01.wav")
    utts, report = scan_one(savee, tmp_path)
    assert [(u.speaker, u.emotion) for u in utts] == [("DC", "angry")]
    assert report.counts() == {("savee", UNPARSED): 1}


def test_emodb_reader(tmp_path):
    exp = build_emodb(tmp_path / "emodb")
    utts, report = scan_one(emodb, tmp_path / "emodb")
    assert_matches(utts, exp)
    assert len(utts) == 32
    assert Counter(u.emotion for u in utts) == {
        "angry": 8, "boredom": 4, "disgust": 4, "fearful": 4, "happy": 4, "sad": 4, "neutral": 4}
    assert {u.speaker: u.gender for u in utts} == {
        "03": "male", "08": "female", "10": "male", "16": "female"}
    assert len(report) == 0
    utts6, report6 = scan_one(emodb, tmp_path / "emodb", DEFAULT_EMOTIONS)
    assert len(utts6) == 28 and "boredom" not in {u.emotion for u in utts6}
    assert report6.counts() == {("emodb", NOT_SELECTED): 4}


NEMO_DISAGREE = "name and data.tsv disagree"
ASED_DISAGREE = "emotion letter and folder disagree"
DUPLICATE = "same clip in another format"


@pytest.mark.parametrize("ext", [".wav", ".ogg"])
def test_nemo_reader(tmp_path, ext):
    exp = build_nemo(tmp_path / "nemo", ext=ext)
    utts, report = scan_one(nemo, tmp_path / "nemo")
    assert_matches(utts, exp)
    assert len(utts) == 35  # 3 speakers x 6 emotions x 2 sentences - MP0's fear + one unlisted clip
    assert {u.speaker: u.gender for u in utts} == {"EB0": "female", "KS0": "male", "MP0": "male"}
    assert Counter(u.emotion for u in utts) == {"angry": 6, "fearful": 4, "happy": 6, "sad": 6,
                                                "surprised": 6, "neutral": 7}
    assert {u.path.suffix for u in utts} == {ext}
    # the table says ".wav" whatever the copy holds; it is read, not counted as a stray
    assert report.counts() == {("nemo", NEMO_DISAGREE): 2, ("nemo", MISSING): 1, ("nemo", NOT_AUDIO): 2}
    reasons = {p.name: r for _, r, p in report.items}
    assert reasons["EB0_anger_5" + ext] == reasons["KS0_fear_4" + ext] == NEMO_DISAGREE
    assert reasons["MP0_sadness_9.wav"] == MISSING
    assert "data.tsv" not in reasons
    # detected by its names, no flag, from a folder holding the corpus: the table is still found
    assert corpora.find_corpora(tmp_path) == [("nemo", tmp_path)]
    report_up = SkipReport()
    assert_matches(corpora.scan(tmp_path, report=report_up), exp)
    assert report_up.counts() == report.counts()
    utts6, report6 = scan_one(nemo, tmp_path / "nemo", DEFAULT_EMOTIONS)
    assert "surprised" not in {u.emotion for u in utts6}
    assert report6.counts()[("nemo", NOT_SELECTED)] == 6


def test_nemo_samples_folder_finds_the_table_above(tmp_path):
    exp = build_nemo(tmp_path / "nemo", ext=".ogg")
    utts, report = scan_one(nemo, tmp_path / "nemo" / "samples")
    assert_matches(utts, exp)
    assert report.counts() == {("nemo", NEMO_DISAGREE): 2, ("nemo", MISSING): 1}


def test_nemo_without_table_reads_names_alone(tmp_path):
    exp = build_nemo(tmp_path / "nemo", table=False)
    utts, report = scan_one(nemo, tmp_path / "nemo")
    assert_matches(utts, exp)
    assert len(utts) == 37 and {u.gender for u in utts} == {"unknown"}
    assert report.counts() == {("nemo", NOT_AUDIO): 2}


def test_nemo_table_without_needed_columns_names_the_file(tmp_path):
    write_wav(tmp_path / "samples" / "EB0_anger_1.wav")
    (tmp_path / "data.tsv").write_text("file_id\temotion\tgender\nEB0_anger_1.wav\tanger\tfemale\n")
    with pytest.raises(ValueError, match=r"data\.tsv: missing column\(s\) speaker_id"):
        nemo.scan(tmp_path)


@pytest.mark.parametrize("module,stem,other", [
    (nemo, "samples/EB0_anger_1", ".ogg"), (ased, "05Angry/a5-01-01-02-50", ".ogg"),
    (ravdess, "Actor_05/03-01-05-01-01-01-05", ".ogg"), (emodb, "wav/03a01Fa", ".mp3"),
    (cremad, "AudioWAV/1001_DFA_ANG_XX", ".ogg"), (tess, "OAF_angry/OAF_back_angry", ".ogg"),
    (savee, "DC/a01", ".ogg"), (folder, "angry/clip", ".ogg")], ids=lambda v: getattr(v, "NAME", None))
def test_one_clip_in_two_formats_is_kept_once(tmp_path, module, stem, other):
    wav = write_wav(tmp_path / f"{stem}.wav")
    copy = tmp_path / f"{stem}{other}"
    copy.write_bytes(b"a lossy copy of the same clip")    # never decoded: the lossless copy is chosen first
    utts, report = scan_one(module, tmp_path)
    assert [u.path for u in utts] == [wav.resolve()]
    assert report.items == [(module.NAME, DUPLICATE, copy)]


@pytest.mark.parametrize("ext", [".wav", ".ogg"])
@pytest.mark.parametrize("folders", [True, False], ids=["folders", "flat"])
def test_ased_reader(tmp_path, ext, folders):
    exp = build_ased(tmp_path / "ased", ext=ext, folders=folders)
    utts, report = scan_one(ased, tmp_path / "ased")
    assert_matches(utts, exp)
    assert len(utts) == 45
    assert Counter(u.emotion for u in utts) == dict.fromkeys(
        ("neutral", "fearful", "happy", "sad", "angry"), 9)
    # the speaker is the last field alone: one person even where the gender field disagrees
    assert {u.group for u in utts} == {"ased/03", "ased/50", "ased/09"}
    assert {(u.speaker, u.gender) for u in utts} == {("03", "female"), ("50", "male"), ("09", "female")}
    assert Counter(u.sentence for u in utts) == {"01": 15, "02": 15, "n1-03": 3, "f2-03": 3,
                                                "h3-03": 3, "s4-03": 3, "a5-03": 3}
    assert report.counts() == {("ased", NOT_AUDIO): 1, ("ased", ASED_DISAGREE): 1 + folders,
                               ("ased", UNKNOWN_LABEL): 1}
    assert corpora.find_corpora(tmp_path / "ased") == [("ased", tmp_path / "ased")]


def test_ased_emotion_checks(tmp_path):
    for name in ("04Sad/s4-01-01-01-03.wav", "04Sad/S4-01-02-01-03.wav",   # letter case varies
                 "04Sad/a5-01-01-01-03.wav",                                 # angry in the sad folder
                 "04Sad/s5-01-01-01-03.wav",                                 # letter and number disagree
                 "Misc/a5-01-01-01-03.wav"):                                 # another folder: the name alone
        write_wav(tmp_path / name)
    utts, report = scan_one(ased, tmp_path)
    assert sorted((u.path.parent.name, u.path.name, u.emotion) for u in utts) == [
        ("04Sad", "S4-01-02-01-03.wav", "sad"), ("04Sad", "s4-01-01-01-03.wav", "sad"),
        ("Misc", "a5-01-01-01-03.wav", "angry")]
    assert report.counts() == {("ased", ASED_DISAGREE): 2}


def test_folder_reader(tmp_path):
    exp = build_folder(tmp_path / "emo")
    utts, report = scan_one(folder, tmp_path / "emo")
    assert_matches(utts, exp)
    assert len(utts) == 18
    assert {u.speaker for u in utts} == {"unknown"}
    assert {u.emotion for u in utts} == {"angry", "sad", "happy", "fearful", "neutral", "surprised"}
    assert report.counts() == {("folder", NOT_AUDIO): 1}
    # detected without flags, "Pleasant Surprise" (a space) included
    rep = SkipReport()
    assert corpora.find_corpora(tmp_path / "emo", rep) == [("folder", tmp_path / "emo")]
    assert len(rep) == 0
    assert_matches(corpora.scan(tmp_path / "emo"), exp)


def test_folder_reader_speaker_level(tmp_path):
    write_wav(tmp_path / "spk1" / "Angry" / "a.wav")
    write_wav(tmp_path / "spk2" / "sad" / "b.wav")
    utts = folder.scan(tmp_path, speaker_level=True)
    assert sorted((u.speaker, u.emotion) for u in utts) == [("spk1", "angry"), ("spk2", "sad")]


def test_csv_list_reader(tmp_path):
    csv_path, exp = build_csvlist(tmp_path)
    report = SkipReport()
    utts = corpora.scan(csv_path, report=report)  # a .csv root is read by the CSV reader
    assert corpora.find_corpora(csv_path) == [("csv", csv_path)]
    assert_matches(utts, exp)
    assert {u.speaker for u in utts} == {"s1", "s2", "s3", "unknown"}
    assert report.counts() == {("csv", MISSING): 1, ("csv", UNKNOWN_LABEL): 1, ("csv", NOT_AUDIO): 1}


def test_csv_list_keeps_a_dataset_column(tmp_path):
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "b.wav")
    (tmp_path / "l.csv").write_text("File,Emotion,Speaker,Dataset\na.wav,angry,x,mine\nb.wav,sad,y,\n")
    utts = corpora.scan(tmp_path / "l.csv")
    assert sorted((u.path.name, u.corpus, u.speaker, u.emotion) for u in utts) == [
        ("a.wav", "mine", "x", "angry"), ("b.wav", "csv", "y", "sad")]


def test_csv_list_missing_columns_names_the_file(tmp_path):
    (tmp_path / "bad.csv").write_text("clip,mood\na.wav,angry\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*path column.*emotion column"):
        corpora.scan(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- detection

def test_detection_on_the_combined_download(combined):
    root = combined.root
    report = SkipReport()
    assert corpora.find_corpora(root, report) == [
        ("cremad", root / "Crema"), ("ravdess", root / "Ravdess"),
        ("savee", root / "Savee"), ("tess", root / "Tess")]
    assert report.counts() == {("unrecognised", NOT_AUDIO): 2}


@pytest.mark.parametrize("emotions", [ALL_EMOTIONS, DEFAULT_EMOTIONS, ("angry", "sad")],
                         ids=["all", "default", "angry+sad"])
def test_scan_combined_download_counts_and_skips_exactly(combined, emotions):
    report = SkipReport()
    utts = corpora.scan(combined.root, emotions=emotions, report=report)
    assert_matches(utts, combined, emotions)
    assert report.counts() == combined.skips(emotions)
    # every file under the root is either kept or reported, exactly once
    all_files = {p.resolve() for p in combined.root.rglob("*") if p.is_file()}
    reported = [p.resolve() for _, _, p in report.items]
    assert len(reported) == len(set(reported))
    assert set(reported) | {u.path for u in utts} == all_files
    assert set(reported).isdisjoint(u.path for u in utts)


def test_combined_download_exact_numbers(combined):
    """The builder's own bookkeeping, spelled out once so a builder change is noticed."""
    report = SkipReport()
    utts = corpora.scan(combined.root, emotions=DEFAULT_EMOTIONS, report=report)
    assert Counter(u.corpus for u in utts) == {"cremad": 25, "ravdess": 21, "savee": 28, "tess": 36}
    assert len({u.group for u in utts}) == 4 + 3 + 4 + 2
    assert report.counts() == {
        ("unrecognised", NOT_AUDIO): 2,
        ("cremad", UNREADABLE): 1,
        ("ravdess", NOT_AUDIO): 1, ("ravdess", SONG): 1, ("ravdess", EMPTY): 1,
        ("ravdess", NOT_SELECTED): 6,
        ("savee", EMPTY): 1, ("savee", NOT_SELECTED): 4,
        ("tess", NOT_AUDIO): 1, ("tess", NOT_SELECTED): 6,
    }
    assert {u.gender for u in utts if u.corpus == "cremad"} == {"unknown"}  # no demographics


def test_empty_and_corrupt_files_are_told_apart(combined):
    report = SkipReport()
    corpora.scan(combined.root, report=report)
    reasons = {p.name: (c, r) for c, r, p in report.items}
    assert reasons["1002_IEO_ANG_HI.wav"] == ("cremad", UNREADABLE)     # random bytes
    assert reasons["03-01-04-02-02-02-02.wav"] == ("ravdess", EMPTY)   # 0 bytes
    assert reasons["KL_h09.wav"] == ("savee", EMPTY)                   # header, no frames


def test_a_clip_too_short_to_hold_speech_is_counted_not_kept(tmp_path):
    """28 samples (a WAV cut to 100 bytes) trained a room view into a crash; the scorer answers
    anything under its minimum "no speech", so prepare leaves such clips out and counts them."""
    from serkit.corpora.base import TOO_SHORT
    from serkit.scorer import MIN_SECONDS      # the scorer's own minimum, one constant

    short = write_wav(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav", seconds=28 / 16000)
    nearly = write_wav(tmp_path / "Actor_01" / "03-01-05-01-02-01-01.wav", seconds=3992 / 16000)  # 8 samples short
    kept = write_wav(tmp_path / "Actor_01" / "03-01-05-01-01-02-01.wav", seconds=MIN_SECONDS)
    utts, report = scan_one(ravdess, tmp_path)
    assert [u.path for u in utts] == [kept.resolve()]
    assert sorted(report.items) == sorted([("ravdess", TOO_SHORT, short), ("ravdess", TOO_SHORT, nearly)])


def test_detection_on_the_shared_layout(shared_like):
    root = shared_like.root
    report = SkipReport()
    assert corpora.find_corpora(root, report) == [
        ("ased", root / "ased"), ("emodb", root / "emodb"), ("nemo", root / "nemo"),
        ("ravdess", root / "ravdess")]
    utts = corpora.scan(root, report=report)
    assert_matches(utts, shared_like)
    assert Counter(u.corpus for u in utts) == {"ravdess": 18, "emodb": 32, "nemo": 34, "ased": 45}
    assert report.counts() == {("ravdess", SONG): 1}
    assert len({u.group for u in utts}) == 2 + 4 + 3 + 3


def test_detection_of_a_single_corpus_root_and_a_nested_one(tmp_path):
    build_emodb(tmp_path / "EmoDB")
    assert corpora.find_corpora(tmp_path / "EmoDB") == [("emodb", tmp_path / "EmoDB")]
    assert corpora.find_corpora(tmp_path / "EmoDB" / "wav") == [("emodb", tmp_path / "EmoDB" / "wav")]
    build_cremad(tmp_path / "CREMA-D")
    assert corpora.find_corpora(tmp_path) == [("cremad", tmp_path / "CREMA-D"),
                                              ("emodb", tmp_path / "EmoDB")]


def test_unrecognised_folder_is_reported_not_guessed(tmp_path):
    for name in ("hello.wav", "take2.wav", "foo.flac"):
        write_wav(tmp_path / "misc" / name)
    (tmp_path / "misc" / "notes.md").write_text("x")
    report = SkipReport()
    assert corpora.find_corpora(tmp_path, report) == []
    assert report.counts() == {("unrecognised", NO_CORPUS): 3, ("unrecognised", NOT_AUDIO): 1}
    assert corpora.scan(tmp_path) == []


def test_forced_reader_ignores_detection(tmp_path):
    exp = build_tess(tmp_path / "t")
    report = SkipReport()
    utts = corpora.scan(tmp_path / "t", corpus="tess", report=report)
    assert_matches(utts, exp)
    # the wrong reader keeps nothing and says why for every file
    report = SkipReport()
    assert corpora.scan(tmp_path / "t", corpus="ravdess", report=report) == []
    assert report.counts() == {("ravdess", UNPARSED): 42}


def test_detection_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        corpora.find_corpora(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not found"):
        corpora.scan(tmp_path / "nope", corpus="ravdess")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="folder of clips or a .csv"):
        corpora.find_corpora(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown corpus 'iemocap'"):
        corpora.scan(tmp_path, corpus="iemocap")


# --------------------------------------------------------------------------- emotion choice

def test_resolve_emotions():
    assert resolve_emotions(None) == DEFAULT_EMOTIONS
    assert resolve_emotions("default") == DEFAULT_EMOTIONS
    assert set(DEFAULT_EMOTIONS) == {"angry", "happy", "sad", "fearful", "disgust", "neutral"}
    assert resolve_emotions("all") == ALL_EMOTIONS
    assert len(ALL_EMOTIONS) == 9
    assert resolve_emotions(" Sad, angry ,") == ("angry", "sad")  # canonical order, trimmed
    assert resolve_emotions(["calm", "neutral"]) == ("neutral", "calm")


@pytest.mark.parametrize("spec,bad", [("angry,excited", "excited"), ("", "(none given)"),
                                      (",,", "(none given)"), (["mad"], "mad")])
def test_resolve_emotions_errors(spec, bad):
    with pytest.raises(ValueError) as info:
        resolve_emotions(spec)
    msg = str(info.value)
    assert bad in msg and "'all'" in msg and "surprised" in msg


def test_prepare_emotion_choices(combined):
    every = prepare([combined.root], emotions="all")
    default = prepare([combined.root])
    chosen = prepare([combined.root], emotions="angry,sad")
    assert len(every.utterances) == len(combined.kept(ALL_EMOTIONS)) == 126
    assert len(default.utterances) == len(combined.kept(DEFAULT_EMOTIONS)) == 110
    assert len(chosen.utterances) == len(combined.kept(("angry", "sad"))) == 38
    assert {u.emotion for u in every.utterances} == {*DEFAULT_EMOTIONS, "calm", "surprised"}
    assert {u.emotion for u in chosen.utterances} == {"angry", "sad"}
    assert chosen.skipped.counts() == combined.skips(("angry", "sad"))
    assert every.manifest is None and every.skipped_csv is None


# --------------------------------------------------------------------------- manifest

def test_manifest_round_trip(shared_like, tmp_path):
    utts = corpora.scan(shared_like.root)
    out = write_manifest(utts, tmp_path / "runs" / "m.csv")
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == COLUMNS
    assert rows[0][:3] == ["Dataset", "Emotion", "File"]
    assert len(rows) == 1 + len(utts)
    files = [r[2] for r in rows[1:]]
    assert all(f.startswith("../corpora/") for f in files)  # relative to the manifest's folder
    back = read_manifest(out)
    assert back == utts  # every field, paths resolved back to absolute
    assert {u.sentence for u in back if u.corpus == "ased"} >= {"01", "02", "a5-03"}
    assert not (tmp_path / "runs" / "m.csv.tmp").exists()


def test_manifest_moves_with_its_data(shared_like, tmp_path):
    utts = corpora.scan(shared_like.root)
    write_manifest(utts, shared_like.root / "manifest.csv")
    moved = tmp_path / "elsewhere"
    shutil.move(str(shared_like.root), moved)
    back = read_manifest(moved / "manifest.csv")
    assert len(back) == len(utts)
    assert all(u.path.is_file() and moved.resolve() in u.path.parents for u in back)


def test_manifest_is_a_csv_list(shared_like, tmp_path):
    utts = corpora.scan(shared_like.root)
    write_manifest(utts, tmp_path / "m.csv")
    again = corpora.scan(tmp_path / "m.csv", emotions=ALL_EMOTIONS)
    key = lambda u: (u.path, u.corpus, u.speaker, u.emotion, u.sentence)  # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, utts))


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.csv").write_text("Dataset,File\nx,a.wav\n")
    with pytest.raises(ValueError, match=r"m\.csv: missing column\(s\) Emotion"):
        read_manifest(tmp_path / "m.csv")


def test_read_minimal_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("Emotion,File\nAngry,a.wav\n")
    [u] = read_manifest(tmp_path / "m.csv")
    assert (u.corpus, u.speaker, u.emotion, u.path) == ("csv", "unknown", "angry", tmp_path / "a.wav")
    assert u.duration is None and u.sample_rate is None and u.split == "" and u.sentence == ""


# --------------------------------------------------------------------------- serkit prepare

def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_prepare_end_to_end(combined, tmp_path, capsys):
    out = tmp_path / "out" / "manifest.csv"
    assert main(["prepare", str(combined.root), "-o", str(out)]) == 0
    rows = _read_csv(out)
    assert Counter((r["Dataset"], r["Emotion"]) for r in rows) == combined.counts(DEFAULT_EMOTIONS)
    skipped = _read_csv(tmp_path / "out" / "manifest.skipped.csv")
    assert Counter((r["Dataset"], r["Reason"]) for r in skipped) == combined.skips(DEFAULT_EMOTIONS)
    assert {Path(r["File"]).name for r in skipped} >= {"README.txt", ".DS_Store", "1002_IEO_ANG_HI.wav"}
    printed = capsys.readouterr().out
    # the closing line is whole (paths not broken by the console width)
    assert (f"wrote 110 clips to {out}; 24 skipped files listed in "
            f"{tmp_path / 'out' / 'manifest.skipped.csv'}\n") in printed


def test_cli_prepare_verbose_lists_every_skipped_file(combined, tmp_path, capsys):
    assert main(["prepare", str(combined.root), "-v", "-o", str(tmp_path / "m.csv")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  skipped ")]
    assert len(lines) == 24
    readme = combined.root / "README.txt"
    assert f"  skipped [unrecognised] not audio: {readme}" in lines
    [song] = combined.root.rglob("03-02-*.wav")
    assert f"  skipped [ravdess] song, not speech: {song}" in lines


def test_cli_prepare_options(combined, shared_like, tmp_path):
    out = tmp_path / "m.csv"
    assert main(["prepare", str(combined.root), str(shared_like.root), "-o", str(out),
                 "--emotions", "all"]) == 0
    rows = _read_csv(out)
    assert len(rows) == len(combined.clips) + len(shared_like.clips)
    assert main(["prepare", str(combined.root / "Tess"), "--corpus", "tess", "-o", str(out),
                 "--emotions", "angry,surprised"]) == 0
    assert Counter(r["Emotion"] for r in _read_csv(out)) == {"angry": 6, "surprised": 6}


def test_cli_prepare_nothing_found_exits_1_and_keeps_the_earlier_manifest(tmp_path, capsys):
    write_wav(tmp_path / "good" / "Actor_01" / "03-01-05-01-01-01-01.wav")
    (tmp_path / "good" / "Actor_01" / "notes.txt").write_text("a stray")
    out = tmp_path / "m.csv"
    assert main(["prepare", str(tmp_path / "good"), "-o", str(out)]) == 0
    before = out.read_bytes(), out.with_suffix(".skipped.csv").read_bytes()
    write_wav(tmp_path / "data" / "whatever.wav")
    assert main(["prepare", str(tmp_path / "data"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no labelled clips found" in err and f"nothing written to {out}" in err
    assert (out.read_bytes(), out.with_suffix(".skipped.csv").read_bytes()) == before
    assert main(["prepare", str(tmp_path / "data"), "-o", str(tmp_path / "new.csv")]) == 1
    assert not (tmp_path / "new.csv").exists() and not (tmp_path / "new.skipped.csv").exists()


@pytest.mark.parametrize("extra", [[], ["--corpus", "ravdess"]], ids=["detect", "forced"])
def test_cli_prepare_missing_folder_exits_2_with_one_line(tmp_path, capsys, extra):
    missing = tmp_path / ("a-rather-long-folder-name-so-that-the-message-exceeds-eighty-columns" * 2)
    assert main(["prepare", str(missing), *extra, "-o", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith("error: corpus folder not found: ") and str(missing) in err
    assert not (tmp_path / "m.csv").exists()


def test_cli_prepare_bad_emotions_exits_2(combined, tmp_path, capsys):
    assert main(["prepare", str(combined.root), "--emotions", "angry,bogus",
                 "-o", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown emotion(s) bogus") and err.count("\n") == 1

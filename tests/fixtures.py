"""Builders for tiny synthetic corpora in each corpus's real naming scheme.

Every builder writes short sine-tone clips under a folder it is given and returns an
:class:`Expected` that records what a correct reader must find there: every clip it keeps
(corpus, speaker, emotion, the corpus's own label, gender, duration, sample rate) and every file
it must skip with the reason. Tests compare the readers' output with these records exactly.
"""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from serkit.emotions import ALL_EMOTIONS

SR = 16000

# Skip reasons as the readers spell them (kept literal here so a renamed reason fails a test).
NOT_AUDIO = "not audio"
UNPARSED = "name does not parse"
UNKNOWN_LABEL = "unknown label"
NOT_SELECTED = "emotion not selected"
UNREADABLE = "unreadable audio"
EMPTY = "empty audio"
SONG = "song, not speech"
NO_CORPUS = "no corpus recognised"
MISSING = "file missing"


# --------------------------------------------------------------------------- audio writers

def sine(seconds: float = 0.25, sr: int = SR, freq: float = 440.0, channels: int = 1,
         amplitude: float = 0.3) -> np.ndarray:
    """A sine tone, (frames,) or (frames, channels) float32."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)


def write_wav(path: str | Path, seconds: float = 0.25, sr: int = SR, freq: float = 440.0,
              channels: int = 1, subtype: str | None = "PCM_16", format: str | None = None) -> Path:
    """Write a sine tone to ``path`` (parents created); returns the path. An ``.ogg`` name is
    written as Ogg Vorbis, as in ``shared/corpora``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".ogg" and subtype == "PCM_16":
        subtype = "VORBIS"
    sf.write(str(path), sine(seconds, sr, freq, channels), sr, subtype=subtype, format=format)
    return path


def write_corrupt(path: str | Path, n: int = 2000, seed: int = 0) -> Path:
    """Random bytes under an audio name: libsndfile cannot open it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(n))
    return path


def write_empty(path: str | Path) -> Path:
    """A 0-byte file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_zero_frames(path: str | Path, sr: int = SR) -> Path:
    """A valid WAV header with no samples."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(0, dtype=np.float32), sr, subtype="PCM_16")
    return path


def write_text(path: str | Path, text: str = "not audio\n") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- expectations

@dataclass(frozen=True)
class Clip:
    corpus: str
    speaker: str
    emotion: str
    label: str
    gender: str
    path: Path
    duration: float
    sample_rate: int
    sentence: str = ""


@dataclass(frozen=True)
class Stray:
    """A file a reader must not keep. With ``emotion`` set, the file's name parses to that
    emotion, so when the emotion is not selected the reason is "emotion not selected" instead."""

    corpus: str
    reason: str
    path: Path
    emotion: str | None = None


@dataclass
class Expected:
    root: Path
    clips: list[Clip] = field(default_factory=list)
    strays: list[Stray] = field(default_factory=list)

    # -- recording
    def clip(self, corpus: str, speaker: str, emotion: str, label: str, gender: str, path: Path,
             seconds: float = 0.25, sr: int = SR, freq: float = 440.0, sentence: str = "") -> Path:
        write_wav(path, seconds=seconds, sr=sr, freq=freq)
        frames = int(round(seconds * sr))
        self.clips.append(Clip(corpus, speaker, emotion, label, gender, Path(path).resolve(),
                               frames / sr, sr, sentence))
        return path

    def stray(self, corpus: str, reason: str, path: Path, emotion: str | None = None) -> None:
        self.strays.append(Stray(corpus, reason, Path(path).resolve(), emotion))

    def merge(self, *others: Expected) -> Expected:
        for o in others:
            self.clips += o.clips
            self.strays += o.strays
        return self

    # -- what a reader must report
    def kept(self, emotions: Iterable[str] = ALL_EMOTIONS) -> list[Clip]:
        keep = set(emotions)
        return [c for c in self.clips if c.emotion in keep]

    def counts(self, emotions: Iterable[str] = ALL_EMOTIONS) -> Counter:
        """Clips kept per (corpus, emotion)."""
        return Counter((c.corpus, c.emotion) for c in self.kept(emotions))

    def skips(self, emotions: Iterable[str] = ALL_EMOTIONS) -> Counter:
        """Files not kept per (corpus, reason)."""
        keep = set(emotions)
        out = Counter((c.corpus, NOT_SELECTED) for c in self.clips if c.emotion not in keep)
        for s in self.strays:
            not_selected = s.emotion is not None and s.emotion not in keep
            out[(s.corpus, NOT_SELECTED if not_selected else s.reason)] += 1
        return out

    def speakers(self, emotions: Iterable[str] = ALL_EMOTIONS) -> set[tuple[str, str]]:
        return {(c.corpus, c.speaker) for c in self.kept(emotions)}

    def by_path(self) -> dict[Path, Clip]:
        return {c.path: c for c in self.clips}


# Small varied durations so header-read durations are checked, not assumed.
_DURATIONS = (0.25, 0.3, 0.35, 0.4)     # at least the scorer's 0.25 s: shorter clips are skipped


def _dur(i: int) -> float:
    return _DURATIONS[i % len(_DURATIONS)]


# --------------------------------------------------------------------------- RAVDESS

RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                 "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}


def build_ravdess(root: str | Path, actors: Iterable[int] = (1, 2, 3, 4), sr: int = 48000,
                  song: bool = True) -> Expected:
    """``Actor_XX/03-01-EE-II-SS-RR-XX.wav``: per actor one clip per emotion code 01-08 and a
    second (statement 02) angry clip, i.e. 9 speech clips per actor; actor 01 also gets a song
    clip ``03-02-...`` that must be skipped as "song, not speech"."""
    root = Path(root)
    exp = Expected(root)
    i = 0
    for a in actors:
        actor = f"{a:02d}"
        gender = "male" if a % 2 else "female"
        folder = root / f"Actor_{actor}"
        for code, emotion in RAVDESS_CODES.items():
            statements = ("01", "02") if code == "05" else ("01",)
            for st in statements:
                name = f"03-01-{code}-01-{st}-01-{actor}.wav"
                exp.clip("ravdess", actor, emotion, code, gender, folder / name, _dur(i), sr,
                         sentence=st)
                i += 1
    if song:
        first = f"{next(iter(actors)):02d}"
        p = write_wav(root / f"Actor_{first}" / f"03-02-05-01-01-01-{first}.wav", sr=sr)
        exp.stray("ravdess", SONG, p)
    return exp


# --------------------------------------------------------------------------- CREMA-D

CREMAD_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful",
                "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMAD_SEX = {"1001": "Male", "1002": "Female", "1003": "Male"}  # 1004 is left out of the table


def build_cremad(root: str | Path, audio_dir: str | None = "AudioWAV",
                 demographics: bool = True, speakers: Iterable[str] = ("1001", "1002", "1003", "1004"),
                 bad_names: bool = True) -> Expected:
    """``AudioWAV/SSSS_SEN_EMO_LV.wav``: per speaker one clip per emotion with sentence DFA,
    plus an extra angry IEO clip for 1001 (25 clips for four speakers). With ``demographics``,
    ``VideoDemographics.csv`` lies beside ``AudioWAV`` giving 1001/1003 male, 1002 female; 1004
    is not in it, so stays unknown. With ``bad_names`` a name that does not parse and a name with
    an unknown emotion code are added."""
    root = Path(root)
    folder = root / audio_dir if audio_dir else root
    exp = Expected(root)
    speakers = tuple(speakers)
    sex = {s: CREMAD_SEX[s].lower() for s in speakers if s in CREMAD_SEX} if demographics else {}
    levels = ("XX", "LO", "MD", "HI")
    i = 0
    for s in speakers:
        for code, emotion in CREMAD_CODES.items():
            name = f"{s}_DFA_{code}_{levels[i % 4]}.wav"
            exp.clip("cremad", s, emotion, code, sex.get(s, "unknown"), folder / name, _dur(i),
                     sentence="DFA")
            i += 1
    exp.clip("cremad", speakers[0], "angry", "ANG", sex.get(speakers[0], "unknown"),
             folder / f"{speakers[0]}_IEO_ANG_HI.wav", 0.4, sentence="IEO")
    if bad_names:
        exp.stray("cremad", UNPARSED, write_wav(folder / f"{speakers[0]}_DFA_ANG.wav"))
        exp.stray("cremad", UNKNOWN_LABEL, write_wav(folder / f"{speakers[0]}_DFA_XYZ_XX.wav"))
    if demographics:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "VideoDemographics.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
            for actor, sx in CREMAD_SEX.items():
                w.writerow([actor, 30, sx, "Caucasian", "Not Hispanic"])
    return exp


# --------------------------------------------------------------------------- TESS

# (folder spelling, emotion word in the file name, canonical emotion): the folder spellings are
# as uneven as in the copies that circulate.
TESS_FOLDERS = {
    "OAF": [("OAF_angry", "angry", "angry"), ("OAF_disgust", "disgust", "disgust"),
            ("OAF_Fear", "fear", "fearful"), ("OAF_happy", "happy", "happy"),
            ("OAF_neutral", "neutral", "neutral"), ("OAF_Pleasant_surprise", "ps", "surprised"),
            ("OAF_Sad", "sad", "sad")],
    "YAF": [("YAF_angry", "angry", "angry"), ("YAF_disgust", "disgust", "disgust"),
            ("YAF_fear", "fear", "fearful"), ("YAF_happy", "happy", "happy"),
            ("YAF_neutral", "neutral", "neutral"), ("YAF_pleasant_surprised", "ps", "surprised"),
            ("YAF_sad", "sad", "sad")],
}
TESS_WORDS = ("back", "bite", "dog")


def build_tess(root: str | Path) -> Expected:
    """``OAF_angry/OAF_back_angry.wav``, ``YAF_pleasant_surprised/YAF_dog_ps.wav``,
    ``OAF_Fear/OAF_bite_fear.wav``…: 2 speakers x 7 emotions x 3 words = 42 clips."""
    root = Path(root)
    exp = Expected(root)
    i = 0
    for spk, folders in TESS_FOLDERS.items():
        for folder, word_label, emotion in folders:
            for w in TESS_WORDS:
                exp.clip("tess", spk, emotion, word_label, "female",
                         root / folder / f"{spk}_{w}_{word_label}.wav", _dur(i), sentence=w)
                i += 1
    return exp


# --------------------------------------------------------------------------- SAVEE

SAVEE_CODES = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
               "n": "neutral", "sa": "sad", "su": "surprised"}


def build_savee(root: str | Path, layout: str = "flat") -> Expected:
    """SAVEE in the ``flat`` layout (``DC_a01.wav``) or ``nested`` (``DC/a01.wav``): 4 male
    speakers x (one clip per emotion prefix + a second neutral) = 32 clips."""
    root = Path(root)
    exp = Expected(root)
    i = 0
    for spk in ("DC", "JE", "JK", "KL"):
        for code, emotion in SAVEE_CODES.items():
            for n in ((1, 2) if code == "n" else (1,)):
                stem = f"{code}{n:02d}"
                path = root / f"{spk}_{stem}.wav" if layout == "flat" else root / spk / f"{stem}.wav"
                exp.clip("savee", spk, emotion, code, "male", path, _dur(i), 44100)
                i += 1
    return exp


# --------------------------------------------------------------------------- EmoDB

EMODB_CODES = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
               "F": "happy", "T": "sad", "N": "neutral"}
EMODB_GENDER = {"03": "male", "08": "female", "10": "male", "16": "female"}


def build_emodb(root: str | Path, speakers: Iterable[str] = ("03", "08", "10", "16")) -> Expected:
    """``wav/03a01Fa.wav``: per speaker one clip per emotion letter and a second anger clip
    (text b02): 8 per speaker."""
    root = Path(root)
    exp = Expected(root)
    i = 0
    for s in speakers:
        for code, emotion in EMODB_CODES.items():
            texts = ("a01", "b02") if code == "W" else ("a01",)
            for t in texts:
                exp.clip("emodb", s, emotion, code, EMODB_GENDER[s],
                         root / "wav" / f"{s}{t}{code}a.wav", _dur(i), sentence=t)
                i += 1
    return exp


# --------------------------------------------------------------------------- nEMO

NEMO_CODES = {"anger": "angry", "fear": "fearful", "happiness": "happy", "sadness": "sad",
              "surprised": "surprised", "neutral": "neutral"}
NEMO_SPEAKERS = {"EB0": "female", "KS0": "male", "MP0": "male"}
NEMO_DISAGREE = "name and data.tsv disagree"


def _nemo_row(file_id: str, emotion: str, speaker: str, gender: str) -> list[str]:
    # speaker_id left-padded with spaces and a quote mark in the text, as in the real table
    return [file_id, emotion, f'Zdanie "{file_id}".', "zdanie", f"{speaker:>11}", gender, "27"]


def build_nemo(root: str | Path, ext: str = ".wav", table: bool = True, strays: bool = True) -> Expected:
    """``samples/EB0_anger_1.<ext>`` + ``data.tsv`` (``file_id`` always ``.wav``, speaker_id
    left-padded): EB0 (female), KS0 and MP0 (male), sentences 1 and 2 in the six emotions, MP0
    without fear: 34 clips. With ``strays``: ``LICENSE`` and ``README.md`` (not audio); a file
    the table lacks (``KS0_neutral_3``, kept on its name, gender from the table); a row naming
    another speaker (``EB0_anger_5``) and one naming another emotion (``KS0_fear_4``), both
    skipped as disagreeing; a row whose file is absent (``MP0_sadness_9``, file missing). Without
    ``table`` genders are unknown and the extras are plain clips."""
    root = Path(root)
    exp = Expected(root)
    samples = root / "samples"
    rows = []
    i = 0
    for spk, gender in NEMO_SPEAKERS.items():
        for word, emotion in NEMO_CODES.items():
            if spk == "MP0" and word == "fear":
                continue
            for n in (1, 2):
                stem = f"{spk}_{word}_{n}"
                exp.clip("nemo", spk, emotion, word, gender if table else "unknown",
                         samples / f"{stem}{ext}", _dur(i), sentence=str(n))
                rows.append(_nemo_row(f"{stem}.wav", word, spk, gender))
                i += 1
    if strays:
        exp.clip("nemo", "KS0", "neutral", "neutral", "male" if table else "unknown",
                 samples / f"KS0_neutral_3{ext}", 0.3, sentence="3")
        rows.append(_nemo_row("EB0_anger_5.wav", "anger", "IC0", "female"))
        rows.append(_nemo_row("KS0_fear_4.wav", "anger", "KS0", "male"))
        rows.append(_nemo_row("MP0_sadness_9.wav", "sadness", "MP0", "male"))
        for stem, emotion in (("EB0_anger_5", "angry"), ("KS0_fear_4", "fearful")):
            path = write_wav(samples / f"{stem}{ext}")
            if table:
                exp.stray("nemo", NEMO_DISAGREE, path)
            else:
                exp.clips.append(Clip("nemo", stem[:3], emotion, stem.split("_")[1], "unknown",
                                      path.resolve(), 0.25, SR, stem.split("_")[2]))
        if table:
            exp.stray("nemo", MISSING, samples / "MP0_sadness_9.wav")
        exp.stray("nemo", NOT_AUDIO, write_text(root / "LICENSE", "CC BY-NC-SA 4.0\n"))
        exp.stray("nemo", NOT_AUDIO, write_text(root / "README.md", "# nEMO\n"))
    if table:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "data.tsv", "w", newline="", encoding="utf-8") as fh:
            fh.write("file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n")
            fh.writelines("\t".join(r) + "\n" for r in rows)
    return exp


# --------------------------------------------------------------------------- ASED

ASED_FOLDERS = {"01Neutral": ("n1", "neutral"), "02Fearful": ("f2", "fearful"),
                "03Happy": ("h3", "happy"), "04Sad": ("s4", "sad"), "05Angry": ("a5", "angry")}
ASED_SPEAKERS = {"03": "01", "50": "02", "09": "01"}  # speaker -> gender field (01 F, 02 M)
ASED_DISAGREE = "emotion letter and folder disagree"


def build_ased(root: str | Path, ext: str = ".wav", folders: bool = True, strays: bool = True) -> Expected:
    """``01Neutral/n1-SS-RR-GG-PP.<ext>`` … ``05Angry/`` (or every file in ``root`` when not
    ``folders``): speakers 03 (female), 50 (male) and 09 (female) each say sentences 01, 02 and
    03 in the five emotions: 45 clips. Speaker 09's angry sentence 03 has the male gender field
    (the speaker stays one female person) and speaker 03's sad sentence 02 an upper-case letter
    (``S4-…``). Sentence ids: ``01``, ``02`` and ``a5-03``-style for the emotion-specific 03.
    With ``strays``: ``README.md`` (not audio), ``a3-…`` (letter and number disagree), a name with
    an unknown letter ``x5-…`` (unknown label) and, with ``folders``, a happy ``h3-…`` clip lying
    in ``04Sad/`` (disagrees with its folder)."""
    root = Path(root)
    exp = Expected(root)
    gender_of = {"01": "female", "02": "male"}
    i = 0
    for folder, (code, emotion) in ASED_FOLDERS.items():
        where = root / folder if folders else root
        for spk, gfield in ASED_SPEAKERS.items():
            for sentence in ("01", "02", "03"):
                field = "02" if (spk, code, sentence) == ("09", "a5", "03") else gfield
                letter = code.upper() if (spk, code, sentence) == ("03", "s4", "02") else code
                name = f"{letter}-{sentence}-01-{field}-{spk}{ext}"
                exp.clip("ased", spk, emotion, code[0], gender_of[gfield], where / name, _dur(i),
                         sentence=sentence if sentence != "03" else f"{code}-03")
                i += 1
    if strays:
        exp.stray("ased", NOT_AUDIO, write_text(root / "README.md", "# ASED\n"))
        exp.stray("ased", ASED_DISAGREE,
                  write_wav(root / ("05Angry" if folders else "") / f"a3-01-02-02-50{ext}"))
        exp.stray("ased", UNKNOWN_LABEL,
                  write_wav(root / ("05Angry" if folders else "") / f"x5-01-02-02-50{ext}"))
        if folders:
            exp.stray("ased", ASED_DISAGREE, write_wav(root / "04Sad" / f"h3-01-02-01-03{ext}"))
    return exp


# --------------------------------------------------------------------------- folder per emotion

# folder name -> canonical emotion; the folder name (lower-cased, spaces and hyphens as "_") is
# the corpus's own label.
FOLDER_EMOTIONS = {"Angry": "angry", "sad": "sad", "Happiness": "happy", "fear": "fearful",
                   "Neutral": "neutral", "Pleasant Surprise": "surprised"}


def build_folder(root: str | Path, per_folder: int = 3, strays: bool = True) -> Expected:
    """``Angry/x.wav``, ``Pleasant Surprise/…``: ``per_folder`` clips in each of six folders, every
    speaker ``unknown``; with ``strays`` a ``notes.txt`` beside the folders (not audio)."""
    root = Path(root)
    exp = Expected(root)
    i = 0
    for folder, emotion in FOLDER_EMOTIONS.items():
        label = folder.lower().replace(" ", "_").replace("-", "_")
        for k in range(per_folder):
            exp.clip("folder", "unknown", emotion, label, "unknown",
                     root / folder / f"clip{k}.wav", _dur(i))
            i += 1
    if strays:
        exp.stray("folder", NOT_AUDIO, write_text(root / "notes.txt"))
    return exp


# --------------------------------------------------------------------------- CSV list

def build_csvlist(root: str | Path, name: str = "list.csv") -> tuple[Path, Expected]:
    """A CSV (path,emotion,speaker) beside a ``clips/`` folder: relative and absolute paths,
    label spellings from the generic table, plus a missing file, an unknown label and a
    non-audio path. Returns (csv path, expectations)."""
    root = Path(root)
    exp = Expected(root)
    rows = []
    spec = [("a.wav", "Angry", "s1", "angry"), ("b.wav", "sad", "s1", "sad"),
            ("c.wav", "fear", "s2", "fearful"), ("d.wav", "happiness", "s2", "happy"),
            ("e.wav", "neutral", "s3", "neutral"), ("f.wav", "surprise", "s3", "surprised"),
            ("g.wav", "disgust", "", "disgust")]  # no speaker given -> "unknown"
    for i, (fname, label, spk, emotion) in enumerate(spec):
        path = root / "clips" / fname
        exp.clip("csv", spk or "unknown", emotion, label.lower(), "unknown", path, _dur(i))
        # one absolute path, the rest relative to the CSV's folder
        rows.append([str(path.resolve()) if i == 0 else f"clips/{fname}", label, spk])
    rows.append(["clips/missing.wav", "angry", "s1"])
    exp.stray("csv", MISSING, root / "clips" / "missing.wav")
    write_wav(root / "clips" / "x.wav")
    rows.append(["clips/x.wav", "excited", "s1"])
    exp.stray("csv", UNKNOWN_LABEL, root / "clips" / "x.wav")
    write_text(root / "clips" / "notes.txt")
    rows.append(["clips/notes.txt", "angry", "s1"])
    exp.stray("csv", NOT_AUDIO, root / "clips" / "notes.txt")
    csv_path = root / name
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "emotion", "speaker"])
        w.writerows(rows)
    return csv_path, exp


# --------------------------------------------------------------------------- combined download

def build_combined(root: str | Path) -> Expected:
    """The original project's combined download: ``Crema/`` (flat, no demographics),
    ``Ravdess/audio_speech_actors_01-24/Actor_XX/``, ``Savee/`` (flat), ``Tess/<uneven folders>``,
    with strays: ``.DS_Store`` and ``README.txt`` at the top (no corpus), a ``.DS_Store`` inside
    ``Tess/`` and ``Actor_01/``, a corrupt ``.wav`` in ``Crema/`` and a 0-byte ``.wav`` in
    ``Actor_02/`` and a header-only (0-frame) ``.wav`` in ``Savee/``, all three validly named."""
    root = Path(root)
    exp = Expected(root)
    exp.merge(
        build_cremad(root / "Crema", audio_dir=None, demographics=False, bad_names=False),
        build_ravdess(root / "Ravdess" / "audio_speech_actors_01-24", actors=(1, 2, 3)),
        build_savee(root / "Savee", layout="flat"),
        build_tess(root / "Tess"),
    )
    exp.stray("unrecognised", NOT_AUDIO, write_text(root / ".DS_Store", "\0\0\0\1Bud1"))
    exp.stray("unrecognised", NOT_AUDIO, write_text(root / "README.txt", "Kaggle combined set\n"))
    exp.stray("tess", NOT_AUDIO, write_text(root / "Tess" / ".DS_Store", "\0\0\0\1Bud1"))
    rav = root / "Ravdess" / "audio_speech_actors_01-24"
    exp.stray("ravdess", NOT_AUDIO, write_text(rav / "Actor_01" / ".DS_Store", "\0\0\0\1Bud1"))
    exp.stray("cremad", UNREADABLE, write_corrupt(root / "Crema" / "1002_IEO_ANG_HI.wav"),
              emotion="angry")
    exp.stray("ravdess", EMPTY, write_empty(rav / "Actor_02" / "03-01-04-02-02-02-02.wav"),
              emotion="sad")
    exp.stray("savee", EMPTY, write_zero_frames(root / "Savee" / "KL_h09.wav"), emotion="happy")
    return exp


def build_shared_like(root: str | Path) -> Expected:
    """The layout of ``shared/corpora``: ``ravdess/Actor_XX/``, ``emodb/wav/``, ``nemo/samples/``
    with ``nemo/data.tsv`` and ``ased/01Neutral/`` …, the last two in Ogg Vorbis."""
    root = Path(root)
    return Expected(root).merge(build_ravdess(root / "ravdess", actors=(1, 2)),
                                build_emodb(root / "emodb"),
                                build_nemo(root / "nemo", ext=".ogg", strays=False),
                                build_ased(root / "ased", ext=".ogg", strays=False))

"""ASED: Amharic Speech Emotion Dataset v1 (Retta et al., ACM TALLIP 2022).

No licence is stated: the authors offer it for download and ask for a citation (research use).
65 non-professional speakers (25 female, 40 male, four dialects) recorded at home; 2,474 clips
that judges accepted, in one folder per emotion, ``01Neutral/n1-01-01-01-03.wav``:

    emotion letter + folder number (n1 neutral, f2 fearful, h3 happy, s4 sad, a5 angry) -
    sentence (01-07) - repetition (01, 02) - gender (01 female, 02 male) - speaker (01-65)

Traps this reader deals with:

- Sentences 01 and 02 are the two texts every speaker said in every emotion; 03-07 are
  emotion-specific texts (other words in each folder, so the words predict the label). The
  sentence id is ``01``/``02`` for the common texts and the emotion code with the number
  (``a5-03``) for the others, so equal ids mean equal words. Judge a model on ASED by sentences
  01-02 or by leaving the whole corpus out.
- The speaker is the LAST field alone: the gender field disagrees for single files of a few
  speakers, so keying speakers by (gender, number) would split one person in two. A speaker's
  gender is the one most of their files give.
- The letter, the folder number and the folder name say the emotion three times; a file where
  they disagree is skipped as "emotion letter and folder disagree". The letter's case varies
  (``S4-04-02-01-29.wav``). A copy without the emotion folders is read on its names alone.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, SkipFile, audio_files, majority, one_per_stem, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "ased"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'ASED: no licence stated; offered freely with a request to cite (Retta et al., ACM TALLIP 2022): research use only'

#: The emotion letter of the name -> canonical emotion.
LABELS = {"n": "neutral", "f": "fearful", "h": "happy", "s": "sad", "a": "angry"}

#: Emotion folder (lower case) -> the letter and folder number its files must carry.
FOLDERS = {"01neutral": "n1", "02fearful": "f2", "03happy": "h3", "04sad": "s4", "05angry": "a5"}
CODES = frozenset(FOLDERS.values())

#: Sentences every speaker said in every emotion.
COMMON_SENTENCES = ("01", "02")

GENDERS = {"01": "female", "02": "male"}


def words_give_label(sentence: str) -> bool:
    """Whether a clip's text alone tells its emotion: the emotion-specific sentences 03-07 (ids
    such as ``a5-03``). Such clips train models, but every judged figure leaves them out
    (:func:`serkit.corpora.words_give_label`). An unknown sentence (a manifest written without
    the column) is judged."""
    return bool(sentence) and sentence not in COMMON_SENTENCES


DISAGREE = "emotion letter and folder disagree"

_PATTERN = re.compile(r"^([a-z]\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$", re.IGNORECASE)


def parse(path: Path) -> Parsed | None:
    m = _PATTERN.match(path.stem)
    if m is None:
        return None
    code, sentence, _repetition, gender, speaker = m.groups()
    code = code.lower()
    folder = FOLDERS.get(path.parent.name.lower())
    if code[0] in LABELS and (code not in CODES or folder not in (None, code)):
        raise SkipFile(DISAGREE)
    return Parsed(speaker=speaker, label=code[0], gender=GENDERS.get(gender, "unknown"),
                  sentence=sentence if sentence in COMMON_SENTENCES else f"{code}-{sentence}")


def _genders(files: list[Path]) -> dict[str, str]:
    """Speaker -> the gender most of their files' names give."""
    pairs = []
    for f in files:
        try:
            parsed = parse(f)
        except SkipFile:
            continue
        if parsed is not None:
            pairs.append((parsed.speaker, parsed.gender))
    return majority(pairs)


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every ASED clip under ``root`` (the folder holding ``01Neutral/`` … ``05Angry/``)."""
    report = report if report is not None else SkipReport()
    files = one_per_stem(NAME, audio_files(Path(root)), report)
    return scan_with(NAME, LABELS, parse, files, emotions, report, genders=_genders(files))

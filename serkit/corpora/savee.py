"""SAVEE: Surrey Audio-Visual Expressed Emotion (Haq & Jackson, 2009). Free for research.

Four male speakers (DC, JE, JK, KL), 120 clips each, 480 in all. Two layouts exist:
``DC_a01.wav`` (one folder, the speaker as a prefix) and ``DC/a01.wav`` (a folder per speaker,
as in the original ``AudioData/``). The emotion prefix is one of:

    a anger, d disgust, f fear, h happiness, n neutral, sa sadness, su surprise

A trap this reader does not handle: the authors describe 15 TIMIT sentences per emotion, of
which 3 are common to all emotions and the others differ by emotion, so most clips' words give
their emotion away, as ASED's sentences 03-07 do. The file number is the sentence's number
within its emotion, not a text id, and which numbers are the common sentences is not in the
download's Info.txt; until the sentence list is known, no sentence is recorded and every SAVEE
clip is judged (:func:`serkit.corpora.words_give_label`). Read SAVEE figures with that in mind.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, audio_files, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "savee"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'SAVEE: free for research use (Haq & Jackson, 2009)'

LABELS = {
    "a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
    "n": "neutral", "sa": "sad", "su": "surprised",
}

SPEAKERS = ("DC", "JE", "JK", "KL")

_PREFIXED = re.compile(r"^(DC|JE|JK|KL)_(sa|su|a|d|f|h|n)(\d\d)$")
_BARE = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)$")


def parse(path: Path) -> Parsed | None:
    m = _PREFIXED.match(path.stem)
    if m is not None:
        return Parsed(speaker=m.group(1), label=m.group(2), gender="male")
    m = _BARE.match(path.stem)
    if m is not None and path.parent.name in SPEAKERS:
        return Parsed(speaker=path.parent.name, label=m.group(1), gender="male")
    return None


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every SAVEE clip under ``root``, in either layout."""
    return scan_with(NAME, LABELS, parse, audio_files(Path(root)), emotions, report)

"""EmoDB: the Berlin Database of Emotional Speech (Burkhardt et al., 2005). German, free for research.

10 actors (5 male, 5 female), 535 utterances, ``wav/03a01Fa.wav``:

    chars 0-1 speaker (03 … 16), chars 2-4 text code (a01 … b10), char 5 emotion, char 6 version

Emotion letters are German initials: W Wut (anger), L Langeweile (boredom), E Ekel (disgust),
A Angst (fear), F Freude (happiness), T Trauer (sadness), N neutral.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, audio_files, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "emodb"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'EmoDB: free for research use (Burkhardt et al., 2005)'

LABELS = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
    "F": "happy", "T": "sad", "N": "neutral",
}

#: Speaker code -> gender, from the corpus documentation.
SPEAKER_GENDER = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}

_PATTERN = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")


def parse(path: Path) -> Parsed | None:
    m = _PATTERN.match(path.stem)
    if m is None:
        return None
    speaker, text, emotion, _version = m.groups()
    return Parsed(speaker=speaker, label=emotion, gender=SPEAKER_GENDER.get(speaker, "unknown"),
                  sentence=text)


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every EmoDB clip under ``root`` (usually its ``wav/`` folder)."""
    return scan_with(NAME, LABELS, parse, audio_files(Path(root)), emotions, report)

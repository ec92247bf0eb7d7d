"""TESS: Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, 2010). CC BY-NC-ND 4.0.

Two female speakers, OAF (older) and YAF (younger), 200 words each in 7 emotions, 2,800 clips:
``OAF_back_angry.wav``, ``YAF_dog_ps.wav`` (``ps`` = pleasant surprise). Copies differ in their
folder names (``OAF_angry/``, ``YAF_pleasant_surprised/``, ``OAF_Fear/``) and in the case of the
emotion word, so only the file name is read, case-insensitively.

With two speakers, a speaker-independent split puts all of one speaker in one part; see
:mod:`serkit.splits`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, audio_files, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "tess"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'TESS: CC BY-NC-ND 4.0 (Dupuis & Pichora-Fuller, 2010)'

LABELS = {
    "angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
    "neutral": "neutral", "ps": "surprised", "sad": "sad",
}

_PATTERN = re.compile(r"^(OAF|YAF)_(.+)_([a-z]+)$", re.IGNORECASE)


def parse(path: Path) -> Parsed | None:
    m = _PATTERN.match(path.stem)
    if m is None:
        return None
    speaker, word, emotion = m.groups()
    return Parsed(speaker=speaker.upper(), label=emotion.lower(), gender="female", sentence=word.lower())


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every TESS clip under ``root``, whatever its folders are called."""
    return scan_with(NAME, LABELS, parse, audio_files(Path(root)), emotions, report)

"""RAVDESS: Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone & Russo, 2018).

24 North American actors (odd-numbered male, even female), 1,440 speech clips, CC BY-NC-SA 4.0.
Names have seven two-digit fields, ``03-01-05-01-02-01-12.wav``:

    modality (01 AV, 02 video, 03 audio) - vocal channel (01 speech, 02 song) - emotion -
    intensity (01 normal, 02 strong) - statement (01, 02) - repetition (01, 02) - actor (01-24)

Only audio-only speech is read; song clips are counted as skipped.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, SkipFile, audio_files, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "ravdess"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'RAVDESS: CC BY-NC-SA 4.0 (Livingstone & Russo, 2018)'

#: The emotion field of the name -> canonical emotion.
LABELS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}

_PATTERN = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def parse(path: Path) -> Parsed | None:
    m = _PATTERN.match(path.stem)
    if m is None:
        return None
    modality, channel, emotion, _intensity, statement, _rep, actor = m.groups()
    if channel == "02":
        raise SkipFile("song, not speech")
    if modality != "03" or channel != "01":
        raise SkipFile("not audio-only speech")
    return Parsed(speaker=actor, label=emotion, gender="male" if int(actor) % 2 else "female",
                  sentence=statement)


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every RAVDESS speech clip under ``root`` (any depth, e.g. ``Actor_01/``)."""
    return scan_with(NAME, LABELS, parse, audio_files(Path(root)), emotions, report)

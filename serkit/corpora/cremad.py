"""CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., 2014). ODbL.

91 actors (ids 1001-1091), 7,442 clips, ``AudioWAV/1001_DFA_ANG_XX.wav``:

    speaker _ sentence code (12 sentences) _ emotion _ level (LO, MD, HI, or XX unspecified)

The names do not carry gender; the corpus's ``VideoDemographics.csv`` (columns ActorID, Sex…)
does. When it lies in the corpus folder or one of its parents, genders are filled from it;
otherwise they are ``unknown``.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, audio_files, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "cremad"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'CREMA-D: Open Database License (Cao et al., 2014)'

LABELS = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fearful",
    "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}

DEMOGRAPHICS_FILE = "VideoDemographics.csv"

_PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse(path: Path) -> Parsed | None:
    m = _PATTERN.match(path.stem)
    if m is None:
        return None
    speaker, sentence, emotion, _level = m.groups()
    return Parsed(speaker=speaker, label=emotion, sentence=sentence)


def read_genders(root: Path) -> dict[str, str]:
    """Speaker -> 'male'/'female' from the demographics table in ``root`` or a parent folder."""
    for folder in (root, *root.parents[:2]):
        table = folder / DEMOGRAPHICS_FILE
        if table.is_file():
            with open(table, newline="", encoding="utf-8-sig") as fh:
                return {row["ActorID"].strip(): row["Sex"].strip().lower()
                        for row in csv.DictReader(fh) if row.get("ActorID") and row.get("Sex")}
    return {}


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every CREMA-D clip under ``root``. The demographics table is read, not counted as a stray."""
    root = Path(root)
    files = [f for f in audio_files(root) if f.name != DEMOGRAPHICS_FILE]
    return scan_with(NAME, LABELS, parse, files, emotions, report, genders=read_genders(root))

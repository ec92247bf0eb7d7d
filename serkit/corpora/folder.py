"""Any folder of clips sorted into one sub-folder per emotion: ``Angry/x.wav``, ``sad/y.flac``.

The folder name is matched case-insensitively against :data:`LABELS`, which also accepts the
common noun forms (``anger``, ``happiness``, ``fear``…). Folder names carry no speaker, so every
clip's speaker is ``unknown`` unless the layout is ``<speaker>/<emotion>/clip.wav`` with
``speaker_level=True``; a speaker-independent split refuses unknown speakers (use a CSV with a
speaker column, or ``--split random``).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, audio_files, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "folder"

#: Emotion words users name folders (and CSV labels) with -> canonical emotion.
LABELS = {
    "angry": "angry", "anger": "angry", "ang": "angry", "mad": "angry",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy",
    "sad": "sad", "sadness": "sad",
    "fearful": "fearful", "fear": "fearful", "afraid": "fearful", "fea": "fearful",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "neutral": "neutral", "neu": "neutral",
    "calm": "calm",
    "surprised": "surprised", "surprise": "surprised", "ps": "surprised",
    "pleasant_surprise": "surprised", "pleasant_surprised": "surprised",
    "boredom": "boredom", "bored": "boredom",
}


def folder_label(name: str) -> str:
    """A folder name as a key of :data:`LABELS`: lower case, spaces and hyphens as ``_``."""
    return name.lower().replace(" ", "_").replace("-", "_")


def parse(path: Path) -> Parsed | None:
    label = folder_label(path.parent.name)
    if label not in LABELS:
        return None
    return Parsed(speaker="unknown", label=label)


def _parse_with_speaker(path: Path) -> Parsed | None:
    parsed = parse(path)
    return None if parsed is None else Parsed(speaker=path.parent.parent.name, label=parsed.label)


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None, speaker_level: bool = False) -> list[Utterance]:
    """Every clip in an emotion-named folder under ``root``."""
    parser = _parse_with_speaker if speaker_level else parse
    return scan_with(NAME, LABELS, parser, audio_files(Path(root)), emotions, report)

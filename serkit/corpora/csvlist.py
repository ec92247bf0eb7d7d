"""A CSV that lists clips: columns for the path and the emotion, and optionally the speaker.

Column names are matched case-insensitively: ``path``/``file``/``filename``/``wav`` for the clip
(relative paths resolve against the CSV's folder), ``emotion``/``label`` for the emotion (any
word in :data:`serkit.corpora.folder.LABELS`), ``speaker``/``speaker_id`` for the speaker and
``dataset``/``corpus`` to keep a corpus name. A serkit manifest is such a CSV.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, is_audio_name, scan_with
from serkit.corpora.folder import LABELS
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance, reading_csv

NAME = "csv"

PATH_COLUMNS = ("path", "file", "filename", "wav", "audio")
EMOTION_COLUMNS = ("emotion", "label")
SPEAKER_COLUMNS = ("speaker", "speaker_id")
CORPUS_COLUMNS = ("dataset", "corpus")


def _column(fieldnames: list[str], choices: tuple[str, ...]) -> str | None:
    lower = {f.strip().lower(): f for f in fieldnames}
    return next((lower[c] for c in choices if c in lower), None)


def scan(csv_path: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """The clips a CSV lists. Raises ValueError naming the CSV when a needed column is missing."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as fh, reading_csv(csv_path):
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        path_col, emo_col = _column(fields, PATH_COLUMNS), _column(fields, EMOTION_COLUMNS)
        if path_col is None or emo_col is None:
            raise ValueError(
                f"{csv_path}: needs a path column ({'/'.join(PATH_COLUMNS)}) and an emotion "
                f"column ({'/'.join(EMOTION_COLUMNS)}); found {', '.join(fields) or 'no header'}")
        spk_col, corpus_col = _column(fields, SPEAKER_COLUMNS), _column(fields, CORPUS_COLUMNS)
        rows = list(reader)
    by_path: dict[Path, dict[str, str]] = {}
    for row in rows:
        p = Path(row[path_col].strip())
        by_path[(csv_path.parent / p).resolve() if not p.is_absolute() else p] = row

    def parse(path: Path) -> Parsed | None:
        row = by_path[path]
        label = row[emo_col].strip().lower()
        speaker = (row.get(spk_col) or "").strip() if spk_col else ""
        return Parsed(speaker=speaker or "unknown", label=label) if label else None

    report = report if report is not None else SkipReport()
    out: list[Utterance] = []
    # Clips keep the corpus named in the CSV, when it names one.
    groups: dict[str, list[Path]] = {}
    for path, row in by_path.items():
        name = ((row.get(corpus_col) or "").strip() if corpus_col else "") or NAME
        groups.setdefault(name, []).append(path)
    for name, files in groups.items():
        missing = {f for f in files if is_audio_name(f) and not f.is_file()}
        for f in sorted(missing):
            report.add(name, "file missing", f)
        present = [f for f in files if f not in missing]
        out += scan_with(name, LABELS, parse, present, emotions, report)
    return out

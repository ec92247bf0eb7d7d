"""A CSV that lists clips: columns for the path and the emotion, and optionally the speaker.

Column names are matched case-insensitively: ``path``/``file``/``filename``/``wav`` for the clip
(relative paths resolve against the CSV's folder), ``emotion``/``label`` for the emotion (any
word in :data:`serkit.corpora.folder.LABELS`), ``speaker``/``speaker_id`` for the speaker,
``dataset``/``corpus`` to keep a corpus name and ``sentence`` for the id of the text spoken.
A serkit manifest is such a CSV.
"""
from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from serkit.corpora.base import Parsed, is_audio_name, scan_with
from serkit.corpora.folder import LABELS
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance, reading_csv

NAME = "csv"

#: Column names (lower case) a CSV may use for the audio path, the emotion, the speaker, the corpus
#: and the sentence: read by this reader and by ``serkit predict`` (serkit.inputs).
PATH_COLUMNS = ("path", "file", "filename", "filepath", "file_path", "wav", "audio", "audio_path")
EMOTION_COLUMNS = ("emotion", "label")
SPEAKER_COLUMNS = ("speaker", "speaker_id")
CORPUS_COLUMNS = ("dataset", "corpus")
SENTENCE_COLUMNS = ("sentence",)


def find_column(fieldnames: list[str], choices: tuple[str, ...]) -> str | None:
    """The first of ``choices`` among a CSV's ``fieldnames`` (case and spaces aside), as the CSV spells it."""
    lower = {f.strip().lower(): f for f in fieldnames}
    return next((lower[c] for c in choices if c in lower), None)


def scan(csv_path: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """The clips a CSV lists. Raises ValueError naming the CSV when a needed column is missing."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as fh, reading_csv(csv_path):
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        path_col, emo_col = find_column(fields, PATH_COLUMNS), find_column(fields, EMOTION_COLUMNS)
        if path_col is None or emo_col is None:
            raise ValueError(
                f"{csv_path}: needs a path column ({'/'.join(PATH_COLUMNS)}) and an emotion "
                f"column ({'/'.join(EMOTION_COLUMNS)}); found {', '.join(fields) or 'no header'}")
        spk_col, corpus_col = find_column(fields, SPEAKER_COLUMNS), find_column(fields, CORPUS_COLUMNS)
        sent_col = find_column(fields, SENTENCE_COLUMNS)
        rows = list(reader)
    # One entry per row, repeated paths included: serkit.corpora.dedupe counts the repeats (and
    # leaves out files whose rows disagree) instead of a dict keeping the last row silently.
    report = report if report is not None else SkipReport()
    groups: dict[str, list[Path]] = {}
    queued: dict[tuple[str, Path], deque[dict[str, str]]] = {}
    for row in rows:
        p = Path(row[path_col].strip())
        path = (csv_path.parent / p).resolve() if not p.is_absolute() else p
        # Clips keep the corpus named in the CSV, when it names one.
        name = ((row.get(corpus_col) or "").strip() if corpus_col else "") or NAME
        groups.setdefault(name, []).append(path)
        queued.setdefault((name, path), deque()).append(row)

    out: list[Utterance] = []
    for name, files in groups.items():
        def parse(path: Path, name: str = name) -> Parsed | None:
            row = queued[(name, path)].popleft()    # scan_with parses each listed file once, in order
            label = row[emo_col].strip().lower()
            speaker = (row.get(spk_col) or "").strip() if spk_col else ""
            sentence = (row.get(sent_col) or "").strip() if sent_col else ""
            return Parsed(speaker=speaker or "unknown", label=label, sentence=sentence) if label else None

        missing = [f for f in files if is_audio_name(f) and not f.is_file()]
        for f in missing:
            report.add(name, "file missing", f)
        present = [f for f in files if not (is_audio_name(f) and not f.is_file())]
        out += scan_with(name, LABELS, parse, present, emotions, report)
    return out

"""nEMO: emotional speech in Polish (Christop, LREC-COLING 2024). CC BY-NC-SA 4.0.

Nine professional actors, 4,481 clips, ``samples/EB0_anger_1.wav``:

    speaker (EB0, IC0, KD0, KS0, MK0, MP0, SM0, TP0, WR0) _ emotion word _ sentence (1-90)

Emotion words: anger, fear, happiness, sadness, surprised, neutral (no disgust). Each of the 90
sentences is said in every emotion, so the sentence number is the id of the words spoken.

Beside ``samples/`` lies ``data.tsv`` (columns ``file_id emotion raw_text normalized_text
speaker_id gender age``). It repeats the name's speaker and emotion and adds the gender; its
``file_id`` says ``.wav`` whatever the copy's format, and its ``speaker_id`` is left-padded with
spaces, so rows are matched to files by stem and values are stripped. Where the table and the
files disagree:

- a row and a file name that disagree on speaker or emotion: which is right cannot be told, so
  the file is skipped as "name and data.tsv disagree";
- a file the table does not list: kept on its name alone (the name carries speaker, emotion and
  sentence), with the gender the table gives the speaker's other clips;
- a row with no file (under the folder scanned): counted as "file missing" at the listed path;
- one clip in two formats (``x.wav`` beside ``x.ogg``): the lossless copy is kept, the other
  counted as "same clip in another format".

A clip's table is the ``data.tsv`` nearest above it (in its folder or up to two levels up, so
the corpus folder, its ``samples/`` or a folder holding the corpus can be scanned alike).
Without one, names alone are read and genders are ``unknown``.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serkit.corpora.base import Parsed, SkipFile, audio_files, majority, one_per_stem, scan_with
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

NAME = "nemo"
#: The corpus's terms, which a model trained on it inherits (printed in model cards).
LICENCE = 'nEMO: CC BY-NC-SA 4.0 (Christop, LREC-COLING 2024)'

LABELS = {
    "anger": "angry", "fear": "fearful", "happiness": "happy",
    "sadness": "sad", "surprised": "surprised", "neutral": "neutral",
}

TABLE_FILE = "data.tsv"
TABLE_COLUMNS = ("file_id", "emotion", "speaker_id")

DISAGREE = "name and data.tsv disagree"
MISSING = "file missing"

_PATTERN = re.compile(r"^([A-Z]{2}\d)_([a-z]+)_(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Row:
    """What ``data.tsv`` says about one clip."""

    file_id: str
    speaker: str
    emotion: str
    gender: str


def parse(path: Path) -> Parsed | None:
    m = _PATTERN.match(path.stem)
    if m is None:
        return None
    speaker, emotion, sentence = m.groups()
    return Parsed(speaker=speaker.upper(), label=emotion.lower(), sentence=sentence)


def find_table(clip: Path) -> Path | None:
    """The ``data.tsv`` nearest above ``clip``: in its folder or up to two folders higher."""
    for folder in clip.parents[:3]:
        if (folder / TABLE_FILE).is_file():
            return folder / TABLE_FILE
    return None


def read_table(table: Path) -> dict[str, Row]:
    """File stem -> its row (the first, if a stem is listed twice).

    Raises ValueError naming the table when a needed column is missing.
    """
    with open(table, newline="", encoding="utf-8-sig") as fh:
        # the texts may hold quote marks: fields are split on tabs only
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        fields = [f.strip() for f in reader.fieldnames or ()]
        missing = [c for c in TABLE_COLUMNS if c not in fields]
        if missing:
            raise ValueError(f"{table}: missing column(s) {', '.join(missing)}; nEMO's data.tsv "
                             f"has {' '.join(TABLE_COLUMNS)} (found {' '.join(fields) or 'no header'})")
        rows: dict[str, Row] = {}
        for raw in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if row["file_id"]:
                rows.setdefault(Path(row["file_id"]).stem, Row(
                    row["file_id"], row["speaker_id"].upper(), row["emotion"].lower(),
                    row.get("gender", "").lower() or "unknown"))
    return rows


def scan(root: str | Path, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Every nEMO clip under ``root`` (the corpus folder or its ``samples/``), checked against
    ``data.tsv``; the table itself is read, not counted as a stray."""
    root = Path(root)
    report = report if report is not None else SkipReport()
    everything = audio_files(root)
    table_of = {f: find_table(f) for f in everything}
    tables = {t: read_table(t) for t in sorted({t for t in table_of.values() if t is not None})}
    files = one_per_stem(NAME, (f for f in everything if f not in tables), report)

    def checked(path: Path) -> Parsed | None:
        parsed = parse(path)
        table = table_of[path]
        row = tables[table].get(path.stem) if table is not None else None
        if parsed is not None and row is not None and (row.speaker, row.emotion) != (parsed.speaker, parsed.label):
            raise SkipFile(DISAGREE)
        return parsed

    found = {(table_of[f], f.stem) for f in files}
    for table, rows in tables.items():
        listed = table.parent / "samples" if (table.parent / "samples").is_dir() else table.parent
        for stem, row in sorted(rows.items()):
            where = listed / row.file_id
            if (table, stem) not in found and where.resolve().is_relative_to(root.resolve()):
                report.add(NAME, MISSING, where)
    genders = majority((r.speaker, r.gender) for rows in tables.values() for r in rows.values())
    return scan_with(NAME, LABELS, checked, files, emotions, report, genders=genders)

"""Utterances and the manifest CSV that carries them between steps.

The CSV keeps the original project's three columns (``Dataset``, ``Emotion``, ``File``) first
and adds the rest. Paths are written relative to the manifest's folder when they lie under it
(or can be reached with ``..``), so a manifest moves with its data.
"""
from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from serkit.safety import atomic_file, first_line

COLUMNS = ("Dataset", "Emotion", "File", "Speaker", "Gender", "Label", "Duration", "SampleRate", "Split",
           "Sentence")
SKIP_COLUMNS = ("Dataset", "Reason", "File")


def is_manifest(path: str | os.PathLike) -> bool:
    """True for a manifest serkit wrote (its header, from this version or an older one): one
    serkit may replace."""
    header = first_line(path)
    return header == ",".join(COLUMNS) or header == ",".join(COLUMNS[:-1])


def is_skip_report(path: str | os.PathLike) -> bool:
    """True for a ``.skipped.csv`` serkit wrote (its exact header)."""
    return first_line(path) == ",".join(SKIP_COLUMNS)


@dataclass(frozen=True)
class Utterance:
    """One labelled clip.

    ``emotion`` is canonical (see :mod:`serkit.emotions`); ``label`` is the corpus's own code
    for it; ``duration`` is in seconds and ``sample_rate`` in Hz as read from the file header.
    ``split`` is empty unless a manifest fixes the split itself (``train``/``val``/``test``).
    ``sentence`` is the corpus's id of the words spoken, empty when the corpus has none: two clips
    of one corpus with the same id say the same text (ASED's ``01``/``02`` are the sentences every
    speaker said in every emotion; its emotion-specific sentences read ``a5-03``).
    """

    corpus: str
    speaker: str
    emotion: str
    path: Path
    label: str = ""
    gender: str = "unknown"
    duration: float | None = None
    sample_rate: int | None = None
    split: str = ""
    sentence: str = ""

    @property
    def group(self) -> str:
        """The speaker's identity across corpora (speaker ids repeat between corpora)."""
        return f"{self.corpus}/{self.speaker}"


@dataclass
class SkipReport:
    """Files that were looked at and not kept, counted per (corpus, reason), with their paths."""

    items: list[tuple[str, str, Path]] = field(default_factory=list)  # (corpus, reason, path)

    def add(self, corpus: str, reason: str, path: Path) -> None:
        self.items.append((corpus, reason, Path(path)))

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((c, r) for c, r, _ in self.items)

    def merge_new(self, other: SkipReport) -> None:
        """Add ``other``'s files, except those this report already has for the same reason (by
        real path): roots that overlap (a folder and its subfolder, a linked folder) see the same
        strays twice, while one root's own repeats (two rows of a CSV) are all kept."""
        seen = {(c, r, os.path.realpath(p)) for c, r, p in self.items}    # realpath: a loop does not raise
        self.items += [(c, r, p) for c, r, p in other.items if (c, r, os.path.realpath(p)) not in seen]

    def __len__(self) -> int:
        return len(self.items)

    def write_csv(self, path: str | os.PathLike) -> None:
        """One row per skipped file; paths relative to the CSV's folder, as in the manifest."""
        base = Path(path).parent.resolve()
        with atomic_file(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(SKIP_COLUMNS)
            for corpus, reason, p in self.items:
                # abspath, not resolve: a symlink loop is a file to report, not an error
                w.writerow([corpus, reason, display_path(_rel(Path(os.path.abspath(p)), base))])


@contextmanager
def reading_csv(path: str | os.PathLike) -> Iterator[None]:
    """Within the block, a CSV that is not UTF-8 text or holds a field over the csv module's limit
    (128 KiB) raises ValueError naming the file, the line and the fix, not a bare codec error."""
    try:
        yield
    except UnicodeDecodeError:
        data = Path(path).read_bytes()
        try:
            data.decode("utf-8")
            where = ""
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            where = f" (line {line}: byte 0x{data[exc.start]:02x})"
        raise ValueError(f"{path}: not UTF-8 text{where}; save it as UTF-8 (\"CSV UTF-8\" in a spreadsheet, "
                         f"or iconv -f latin1 -t utf-8 {path} > utf8.csv)") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc}); a list of clips has short fields "
                         "(path, emotion, speaker)") from None


def display_path(path: str | os.PathLike) -> str:
    """A path as text that can always be printed and written as UTF-8: bytes of a file name that
    are not UTF-8 are shown as escapes (``bad\\xe9.wav``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


def write_manifest(utterances: list[Utterance], path: str | os.PathLike) -> Path:
    """Write utterances to a CSV at ``path`` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    with atomic_file(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for u in utterances:
            w.writerow([
                u.corpus, u.emotion, _rel(Path(u.path).resolve(), base), u.speaker, u.gender,
                u.label, "" if u.duration is None else f"{u.duration:.4f}",
                "" if u.sample_rate is None else u.sample_rate, u.split, u.sentence,
            ])
    return path


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest` (or any CSV with its columns).

    Only ``Emotion`` and ``File`` are required; relative paths resolve against the CSV's folder.
    Raises ValueError naming the file and the missing column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh, reading_csv(path):
        reader = csv.DictReader(fh)
        missing = {"Emotion", "File"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                             f"expected {', '.join(COLUMNS)}")
        out = []
        for n, row in enumerate(reader, 2):
            duration = _seconds(row.get("Duration") or "", f"{path}:{n}")
            rate = row.get("SampleRate") or ""
            out.append(Utterance(
                corpus=row.get("Dataset") or "csv",
                speaker=row.get("Speaker") or "unknown",
                emotion=row["Emotion"].strip().lower(),
                path=(base / row["File"]).resolve() if not os.path.isabs(row["File"]) else Path(row["File"]),
                label=row.get("Label") or "",
                gender=row.get("Gender") or "unknown",
                duration=duration,
                sample_rate=int(rate) if rate else None,
                split=(row.get("Split") or "").strip().lower(),
                sentence=(row.get("Sentence") or "").strip(),  # absent in older manifests
            ))
    return out


def _seconds(text: str, where: str) -> float | None:
    """A Duration cell: empty (unknown) or a finite number of seconds, at least 0."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: Duration {text!r} is not a number of seconds")
    return value


def with_split(utterances: list[Utterance], parts: list[str]) -> list[Utterance]:
    """Return copies of ``utterances`` with their ``split`` field set from ``parts``."""
    return [replace(u, split=p) for u, p in zip(utterances, parts, strict=True)]

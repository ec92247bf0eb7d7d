"""What ``serkit predict`` reads besides audio: the paths a manifest CSV lists, and which files
are one voice (``--same-speaker --speakers``). Column names are those of the CSV corpus reader
(:mod:`serkit.corpora.csvlist`), matched case-insensitively.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from serkit.corpora.csvlist import CORPUS_COLUMNS, PATH_COLUMNS, SPEAKER_COLUMNS, find_column
from serkit.manifest import reading_csv


def file_key(file: str | os.PathLike) -> str:
    """The identity of an input path: resolved, so every spelling of one file is one key."""
    return os.path.realpath(file)


def _listed(manifest: Path) -> tuple[list[str], list[tuple[int, str, str, dict[str, str]]] | None]:
    """A CSV's header and its rows that name a file, as (line number, path as written, path resolved
    against the CSV's folder, row); None for the rows when the CSV has no column of audio paths."""
    with open(manifest, newline="", encoding="utf-8-sig") as fh, reading_csv(manifest):
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        column = find_column(fields, PATH_COLUMNS)
        if column is None:
            return fields, None
        return fields, [(n, row[column], row[column] if os.path.isabs(row[column]) else str(manifest.parent / row[column]),
                         row) for n, row in enumerate(reader, 2) if (row.get(column) or "").strip()]


def manifest_paths(manifest: str | os.PathLike) -> list[str]:
    """The audio paths listed in a CSV (a serkit manifest or any CSV with a path column).

    Relative paths resolve against the CSV's folder, as in :func:`serkit.manifest.read_manifest`.
    """
    fields, rows = _listed(Path(manifest))
    if rows is None:
        raise ValueError(f"{manifest}: no column of audio paths (looked for "
                         f"{', '.join(PATH_COLUMNS)}; it has {', '.join(fields) or 'no header'})")
    return [path for _, _, path, _ in rows]


def speaker_groups(files: Sequence[str], by: str = "one", inputs: Sequence[str | os.PathLike] = ()) -> list[list[int]]:
    """The indices of ``files`` in groups that are each one voice (``--same-speaker --speakers``),
    in order of first appearance: all of them (``one``), each folder's (``folder``), each speaker's of the
    manifest CSVs among ``inputs`` (``manifest``: their speaker column, with the corpus column
    ``Dataset`` when there is one, so that speaker 03 of two corpora are two voices), or each voice
    a speaker-embedding model tells apart (``voice``: :mod:`serkit.voices`, every file read once). ValueError
    for a file no manifest names, or a manifest without a speaker column."""
    if by == "one":
        return [list(range(len(files)))] if len(files) else []
    if by == "folder":
        key = {f: os.path.dirname(file_key(f)) for f in files}
    elif by == "manifest":
        named = {k: v for m in inputs if str(m).lower().endswith(".csv") for k, v in manifest_speakers(m).items()}
        if not named:
            raise ValueError("--speakers manifest: name a manifest CSV among the inputs (it gives each file's speaker)")
        key = {}
        for f in files:
            if file_key(f) not in named:
                raise ValueError(f"--speakers manifest: {f} is in no manifest given; its speaker is unknown")
            key[f] = named[file_key(f)]
    elif by == "voice":
        from serkit.audio import decode_item
        from serkit.voices import group_files
        return group_files(files, lambda f: decode_item(f)[1])
    else:
        raise ValueError(f"--speakers {by!r}: use one, folder, manifest or voice")
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(key[f], []).append(i)
    return list(groups.values())


def manifest_speakers(manifest: str | os.PathLike) -> dict[str, str]:
    """{file_key(path): speaker} of a CSV with a path and a speaker column (a serkit manifest's
    ``File`` and ``Speaker``, or any of :data:`PATH_COLUMNS` and :data:`SPEAKER_COLUMNS`); the
    speaker is prefixed by the ``Dataset``/``corpus`` column where there is one."""
    fields, rows = _listed(Path(manifest))
    speaker, corpus = find_column(fields, SPEAKER_COLUMNS), find_column(fields, CORPUS_COLUMNS)
    if rows is None or speaker is None:
        raise ValueError(f"{manifest}: --speakers manifest needs a column of audio paths and one of speakers "
                         f"({', '.join(SPEAKER_COLUMNS)}); it has {', '.join(fields) or 'no header'}")
    out = {}
    for n, written, path, row in rows:
        who = (row.get(speaker) or "").strip()
        if not who or who.lower() == "unknown":   # such clips would all be taken for one voice
            raise ValueError(f"{manifest}:{n}: no speaker for {written}; --speakers manifest needs each file's speaker")
        out[file_key(path)] = f"{row.get(corpus) or ''}/{who}" if corpus else who
    return out

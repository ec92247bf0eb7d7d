"""``serkit prepare``: corpus folders in, one manifest out, with every skipped file accounted for."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.markup import escape
from rich.table import Table

import serkit.corpora as corpora
from serkit.emotions import resolve_emotions
from serkit.manifest import SkipReport, Utterance, display_path, is_manifest, is_skip_report, write_manifest
from serkit.safety import check_output_file


@dataclass
class PrepareResult:
    utterances: list[Utterance]
    skipped: SkipReport
    manifest: Path | None
    skipped_csv: Path | None


def prepare(roots: Sequence[str | os.PathLike], output: str | os.PathLike | None = None,
            corpus: str | None = None, emotions: str | Iterable[str] | None = None,
            force: bool = False) -> PrepareResult:
    """Scan ``roots`` (folders or CSV lists), keep the chosen emotions, write the manifest.

    The files not kept are written beside the manifest as ``<name>.skipped.csv``. A file found
    twice (overlapping roots, a linked folder, a repeated CSV row) is kept once; copies that
    disagree on its labels are all left out; either way they are counted as skipped.
    ``output`` may replace a manifest serkit wrote; another file needs ``force``, and an input
    (a CSV list among ``roots``) is never replaced. Both are checked before the scan. When no
    clip is kept, nothing is written (an earlier manifest at ``output`` stays as it was).
    """
    chosen = resolve_emotions(emotions if emotions is None or isinstance(emotions, str) else list(emotions))
    skipped_csv = None
    if output is not None:
        output = check_output_file(output, inputs=roots, force=force, ours=is_manifest)
        skipped_csv = check_output_file(Path(output).with_suffix(".skipped.csv"), inputs=roots, force=force,
                                        ours=is_skip_report, flag="-o (its skip list)")
    report = SkipReport()
    utts: list[Utterance] = []
    for root in roots:
        found = SkipReport()
        utts += corpora.scan(root, corpus=corpus, emotions=chosen, report=found)
        report.merge_new(found)
    utts = corpora.dedupe(utts, report)
    manifest = None
    if output is not None and utts:
        manifest = write_manifest(utts, output)
        report.write_csv(skipped_csv)
    return PrepareResult(utts, report, manifest, skipped_csv)


def summary_table(utts: list[Utterance], width: int | None = None) -> Table:
    """Corpus x emotion clip counts with speakers and hours per corpus: a row per corpus, or, when
    that is wider than ``width`` columns (many emotions), a row per emotion and a column per corpus,
    so no header or number is ever cut."""
    emotions = sorted({u.emotion for u in utts})
    counts = Counter((u.corpus, u.emotion) for u in utts)
    names = sorted({u.corpus for u in utts})
    columns: dict[str, list[str]] = {}          # corpus (or "total") -> its cells in row order
    for c in [*names, None]:
        sel = [u for u in utts if c is None or u.corpus == c]
        per_emotion = [sum(n for (cc, e), n in counts.items() if e == em and c in (None, cc)) for em in emotions]
        columns["total" if c is None else escape(c)] = [*map(str, per_emotion), str(len(sel)),
                                                str(len({u.group for u in sel})),
                                                f"{sum(u.duration or 0 for u in sel) / 3600:.2f}"]
    fields = [*emotions, "clips", "speakers", "hours"]
    title = "Manifest summary: clips per corpus and emotion"
    wide = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    wide.add_column("corpus")
    for f in fields:
        wide.add_column(f, justify="right")
    for name, cells in columns.items():
        if name == "total":
            wide.add_section()
        wide.add_row(name, *cells)
    if width is None or _natural_width(wide) <= width:
        return wide
    tall = Table(title="Manifest summary: clips", box=box.SIMPLE_HEAD, pad_edge=False)
    tall.add_column("")
    for name in columns:
        tall.add_column(name, justify="right")
    for i, f in enumerate(fields):
        if f == "clips":
            tall.add_section()
        tall.add_row(f, *(cells[i] for cells in columns.values()))
    return tall


def _natural_width(table: Table) -> int:
    """Columns ``table`` needs to show every cell and header whole."""
    return Measurement.get(Console(width=10_000), Console(width=10_000).options, table).maximum


def skip_table(report: SkipReport) -> Table:
    table = Table(title="Files not kept")
    for col in ("corpus", "reason", "files"):
        table.add_column(col, justify="right" if col == "files" else "left")
    for (corpus, reason), n in sorted(report.counts().items()):
        table.add_row(escape(corpus), escape(reason), str(n))
    return table


def print_summary(result: PrepareResult, console: Console, verbose: bool = False) -> None:
    console.print(summary_table(result.utterances, console.width))
    if len(result.skipped):
        console.print(skip_table(result.skipped))
        if verbose:
            for corpus, reason, path in result.skipped.items:
                console.print(f"  skipped [{corpus}] {reason}: {display_path(path)}", highlight=False,
                              markup=False, soft_wrap=True)
    if result.manifest:
        console.print(f"wrote {len(result.utterances)} clips to {result.manifest}"
                      + (f"; {len(result.skipped)} skipped files listed in {result.skipped_csv}"
                         if len(result.skipped) else ""), highlight=False, markup=False,
                      soft_wrap=True)

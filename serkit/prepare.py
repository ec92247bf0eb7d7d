"""``serkit prepare``: corpus folders in, one manifest out, with every skipped file accounted for."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from serkit import corpora
from serkit.emotions import resolve_emotions
from serkit.manifest import SkipReport, Utterance, display_path, write_manifest


@dataclass
class PrepareResult:
    utterances: list[Utterance]
    skipped: SkipReport
    manifest: Path | None
    skipped_csv: Path | None


def prepare(roots: Sequence[str | os.PathLike], output: str | os.PathLike | None = None,
            corpus: str | None = None, emotions: str | Iterable[str] | None = None) -> PrepareResult:
    """Scan ``roots`` (folders or CSV lists), keep the chosen emotions, write the manifest.

    The files not kept are written beside the manifest as ``<name>.skipped.csv``.
    """
    chosen = resolve_emotions(emotions if emotions is None or isinstance(emotions, str) else list(emotions))
    report = SkipReport()
    utts: list[Utterance] = []
    for root in roots:
        utts += corpora.scan(root, corpus=corpus, emotions=chosen, report=report)
    manifest = skipped_csv = None
    if output is not None:
        manifest = write_manifest(utts, output)
        skipped_csv = manifest.with_suffix(".skipped.csv")
        report.write_csv(skipped_csv)
    return PrepareResult(utts, report, manifest, skipped_csv)


def summary_table(utts: list[Utterance]) -> Table:
    """Corpus x emotion clip counts with speakers and hours per corpus."""
    emotions = sorted({u.emotion for u in utts})
    table = Table(title="Manifest summary: clips per corpus and emotion")
    table.add_column("corpus")
    for e in emotions:
        table.add_column(e, justify="right")
    for col in ("clips", "speakers", "hours"):
        table.add_column(col, justify="right")
    counts = Counter((u.corpus, u.emotion) for u in utts)
    names = sorted({u.corpus for u in utts})
    for c in [*names, None]:
        sel = [u for u in utts if c is None or u.corpus == c]
        per_emotion = [sum(n for (cc, e), n in counts.items() if e == em and c in (None, cc))
                       for em in emotions]
        if c is None:
            table.add_section()
        table.add_row("total" if c is None else escape(c), *map(str, per_emotion), str(len(sel)),
                      str(len({u.group for u in sel})), f"{sum(u.duration or 0 for u in sel) / 3600:.2f}")
    return table


def skip_table(report: SkipReport) -> Table:
    table = Table(title="Files not kept")
    for col in ("corpus", "reason", "files"):
        table.add_column(col, justify="right" if col == "files" else "left")
    for (corpus, reason), n in sorted(report.counts().items()):
        table.add_row(escape(corpus), escape(reason), str(n))
    return table


def print_summary(result: PrepareResult, console: Console, verbose: bool = False) -> None:
    console.print(summary_table(result.utterances))
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

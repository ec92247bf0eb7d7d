"""``serkit predict``: files, folders, globs or a manifest, printed as a table, JSON or CSV; batch
jobs (``--output``) and emotion timelines of long recordings (``--timeline``).

Its settings are :class:`serkit.config.PredictSettings`; the run's own options (PATH..., --model,
--output, --resume, --force, --timeline, --plot) are written here.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.markup import escape

from serkit.cli import common
from serkit.cli.common import add_force_option, add_model_option, not_a_folder
from serkit.config import BATCH_JOBS, LONG_RECORDINGS, PredictSettings
from serkit.display import UNCERTAIN_CAPTION
from serkit.settings import add_dataclass_arguments, argument_group, dataclass_from_args

if TYPE_CHECKING:
    from rich.table import Table

    from serkit.timeline import Timeline


def expand_paths(items: Sequence[str], skipped: list[str] | None = None) -> list[str]:
    """Files, folders (searched recursively for audio) and glob patterns, in a stable order.

    A path that exists is taken as it is, whatever characters its name holds
    (``interview [take 2].wav``); only a path that does not exist is read as a pattern. Files in a
    folder that are not audio by name (``notes.txt``, hidden files) are left out and appended to
    ``skipped``, so that the caller can count them.
    """
    import glob
    from pathlib import Path

    from serkit.corpora.base import audio_files, is_audio_name

    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = audio_files(p)
            out += [str(f) for f in found if is_audio_name(f)]
            if skipped is not None:
                skipped += [str(f) for f in found if not is_audio_name(f)]
        elif p.suffix.lower() == ".csv" and p.is_file():   # a manifest: its path column
            from serkit.inputs import manifest_paths
            out += manifest_paths(p)
        elif not p.exists() and any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no file matches {item}")
            out += matches
        else:
            out.append(item)  # a missing file is reported in its row, not here
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    from serkit.batch import budget_batches
    from serkit.display import prediction_dict, predictions_table
    from serkit.inference import load_model
    from serkit.safety import to_json

    s = dataclass_from_args(PredictSettings, args)
    check_predict_flags(args, s)
    predictor = load_model(args.model, runtime=s.runtime)   # a shipped model is named as on the page
    # files and timelines are answered with the detector given (as the web API's vad field does);
    # a batch job's model id says so
    predictor.scorer.use_detector(args.vad, args.max_segment)
    skipped: list[str] = []
    files = expand_paths(args.paths, skipped)
    note_skipped(skipped)
    if not files:
        raise FileNotFoundError("no audio files found in " + ", ".join(args.paths))
    if args.timeline or not args.output:                 # (a batch job counts its repeats in its summary)
        files = once_each(files)
    if args.timeline:
        return predict_timelines(args, s, predictor, files)
    if args.output:
        not_a_folder(args.output, "--output")
        return predict_batch(args, s, predictor, files)
    voices: list[int] = []                               # --same-speaker: stretches of speech of each voice
    if s.same_speaker:                                   # one clip in memory at a time
        from serkit.batch import answer_groups
        from serkit.inputs import speaker_groups
        results = [None] * len(files)
        groups = speaker_groups(files, s.speakers, args.paths)
        note_found(s, len(files), len(groups))
        named = [(k, [files[i] for i in group]) for k, group in enumerate(groups)]
        for group, (answers, heard) in zip(groups, answer_groups(predictor, named, s.batch_size, s.speakers == "voice")):
            for i, r in zip(group, answers):
                results[i] = r
            voices.append(heard)
    else:
        results = []
        for group in budget_batches(files, s.batch_size):   # bounded audio in memory per batch
            results += predictor.predict_files([files[i] for i in group], batch_size=s.batch_size)
    if s.format in ("json", "csv"):     # as a batch job writes them, with the model that answered
        from serkit.batch import model_id
        answered = model_id(predictor, s.same_speaker, s.speakers)
    if s.format == "json":
        print(to_json([{**prediction_dict(r), "model": answered} for r in results], indent=2))
    elif s.format == "csv":             # (so `-f csv > out.csv` can go on with `-o out.csv --resume`)
        import csv

        from serkit.batch import csv_columns, csv_row
        w = csv.writer(sys.stdout)
        told = s.same_speaker and s.speakers == "voice"
        w.writerow(csv_columns(predictor.labels, told, model=True))
        w.writerows(csv_row(r, predictor.labels, told, answered) for r in results)
    else:
        name = (f"{predictor.name}, adapted to one speaker" + (f" per {s.speakers}" if s.speakers != "one" else "")
                if any(n > 1 for n in voices) else predictor.name)
        folder, table = predictions_table(results, name, common.console.width)
        if folder:      # once, whole, rather than on every row
            common.console.print(f"files in {folder}:", highlight=False, markup=False, soft_wrap=True)
        common.console.print(table)
    failed = sum(1 for r in results if r.error)
    if failed:
        common.err_console.print(f"{failed} of {len(results)} file(s) could not be scored")
    note_voices(voices)
    return 1 if failed else 0


def note_voices(heard: list[int]) -> None:
    """--same-speaker: say on stderr which voices had too few stretches of speech to adapt."""
    from serkit.speaker import voices_note

    note = voices_note(heard) if heard else None
    if note:
        common.err_console.print(f"note: --same-speaker: {note}", highlight=False, markup=False, soft_wrap=True)


def note_skipped(skipped: Sequence[str]) -> None:
    """Say on stderr how many files in the folders given were left out as not audio, naming one."""
    if skipped:
        common.err_console.print(f"note: {len(skipped)} file(s) in the folders given are not audio by name and "
                                 f"were left out (e.g. {skipped[0]})", highlight=False, markup=False, soft_wrap=True)


def once_each(files: list[str]) -> list[str]:
    """Each file once, in the spelling of its first mention (``a.wav ./a.wav dir/`` name one file
    up to three times), saying on stderr how many repeats were left out."""
    from serkit.batch import unique

    files, repeats = unique(files)
    if repeats:
        common.err_console.print(f"note: {repeats} repeated path(s) left out (a file named again is answered once)",
                                 highlight=False, markup=False, soft_wrap=True)
    return files


def note_found(s: PredictSettings, files: int, groups: int) -> None:
    """--speakers voice: say how many voices the speaker model told apart (the groups adapted)."""
    if s.same_speaker and s.speakers == "voice":
        common.err_console.print(f"note: --speakers voice: {files} file(s) heard as {groups} voice(s)",
                                 highlight=False, markup=False, soft_wrap=True)


def check_predict_flags(args: argparse.Namespace, s: PredictSettings) -> None:
    """Flags that only make sense together: refuse, saying why, rather than ignore one."""
    if not args.timeline:
        for flag, value in (("--plot", args.plot), ("--segment-seconds", s.segment_seconds)):
            if value is not None:
                raise ValueError(f"{flag} belongs to emotion timelines of long recordings: add --timeline "
                                 "(a file is answered in the detector's stretches of speech: --vad, --max-segment)")
    if args.output and s.format != "table":
        raise ValueError(f"--format {s.format} is what is printed; with --output the file's suffix sets its "
                         f"format ({'.json or .csv' if args.timeline else '.csv or .jsonl'}): drop one of them")
    if args.output and not args.timeline and args.output.lower().endswith(".json"):
        raise ValueError(f"--output {args.output}: a batch job appends rows as it goes (so a killed job can "
                         "--resume), which a .json array cannot do; write .jsonl (one JSON object a line) "
                         "or .csv, or print one JSON array with --format json > FILE")
    if s.speakers != "one" and not s.same_speaker:
        raise ValueError(f"--speakers {s.speakers} says which files are one voice for --same-speaker: add it")
    if s.speakers not in ("one", "voice") and args.timeline:
        raise ValueError(f"--speakers {s.speakers} groups files; with --timeline each recording is one voice, "
                         "or --speakers voice tells its voices apart")
    if s.same_speaker and args.output and not args.timeline and s.engine != "local":
        raise ValueError(f"--same-speaker adapts the answers of all the files together: a batch job on "
                         f"--engine {s.engine} cannot; use --engine local")
    if not args.output and args.resume:
        raise ValueError("--resume continues a batch job: add --output FILE")
    if not args.output and s.engine != "local":
        raise ValueError(f"--engine {s.engine} runs batch jobs: add --output FILE")


DETECTOR = ("vad", "max_segment")      # None when not given: the model's own


def predict_batch(args: argparse.Namespace, s: PredictSettings, predictor, files: list[str]) -> int:
    """serkit predict --output FILE: a resumable batch job (see serkit.batch)."""
    from serkit.batch import model_id, run_batch

    if s.engine == "ray":
        from serkit.ray_engine import run_ray
        summary = run_ray(args.model, files, args.output, labels=predictor.labels, runtime=s.runtime,
                          batch_size=s.batch_size, actors=s.actors, address=s.ray_address,
                          resume=args.resume, progress=s.progress, force=args.force, inputs=args.paths,
                          model_id=model_id(predictor), vad=predictor.scorer.vad,
                          max_segment_s=predictor.scorer.max_segment_s)
    else:
        summary = run_batch(predictor, files, args.output, batch_size=s.batch_size, workers=s.workers,
                            resume=args.resume, progress=s.progress, force=args.force, inputs=args.paths,
                            same_speaker=s.same_speaker, speakers=s.speakers)
    common.err_console.print(summary.line(), highlight=False, markup=False, soft_wrap=True)
    note_found(s, summary.total, summary.groups)
    note_voices(summary.voices)
    return 1 if summary.failed else 0


def plot_paths(plot: str, files: list[str]) -> dict:
    """--plot PLOT: file -> its PNG. One recording's plot is PLOT itself when it ends in .png;
    otherwise (and always for several recordings) PLOT is a folder and each plot is named after
    its recording, or, where two recordings share a name, after its path below their common folder
    (``a_x.wav.png``, ``b_x.wav.png``), so that no plot replaces another."""
    import os
    from collections import Counter
    from pathlib import Path

    png = plot.lower().endswith(".png")
    folder = Path(plot).is_dir() or plot.endswith(("/", os.sep)) or len(files) > 1 or not Path(plot).suffix
    if not folder and not png:
        raise ValueError(f"--plot {plot}: plots are PNG images: give a .png file, or a folder for them (end its name with /)")
    if not folder:
        return {file: Path(plot) for file in files}
    if png and not Path(plot).is_dir():
        raise ValueError(f"--plot {plot}: {len(files)} recordings give {len(files)} plots: name a folder for them")
    if Path(plot).exists() and not Path(plot).is_dir():
        raise ValueError(f"--plot {plot}: a file is there; plots go into a folder: name another")
    stems = Counter(Path(f).stem for f in files)
    base = os.path.commonpath([os.path.abspath(os.path.dirname(f)) for f in files])
    names = {f: (f"{Path(f).stem}.png" if stems[Path(f).stem] == 1 else
                 "_".join(Path(os.path.relpath(os.path.abspath(f), base)).parts) + ".png") for f in files}
    taken = Counter(names.values())
    seen: Counter = Counter()
    for f, name in names.items():           # names that still meet (a/b/x.wav, a_b/x.wav) get a number
        if taken[name] > 1:
            seen[name] += 1
            names[f] = f"{name[:-4]}-{seen[name]}.png"
    return {f: Path(plot) / name for f, name in names.items()}


def predict_timelines(args: argparse.Namespace, s: PredictSettings, predictor, files: list[str]) -> int:
    """serkit predict --timeline: emotions over time of long recordings (see serkit.timeline)."""
    from pathlib import Path

    from serkit.audio import AudioError
    from serkit.safety import check_output_file, to_json
    from serkit.timeline import is_timeline_file, timelines_csv, write_timelines

    err = common.err_console
    if args.resume:
        raise ValueError("--resume is for batch jobs, not --timeline")
    if args.output and Path(args.output).suffix.lower() not in (".json", ".csv"):
        raise ValueError(f"--output {args.output}: a timeline is written to .json or .csv")
    not_a_folder(args.output, "--output")
    pngs = plot_paths(args.plot, files) if args.plot else {}
    plot_folder = args.plot and not any(png == Path(args.plot) for png in pngs.values())
    # before any work: replace only timelines and plots serkit wrote (or any file, with --force)
    targets = ([(args.output, "--output")] if args.output else []) + [(png, "--plot") for png in pngs.values()]
    for path, flag in targets:
        check_output_file(path, inputs=files, force=args.force, ours=is_timeline_file, flag=flag)
    if args.plot and not plot_folder:
        not_a_folder(args.plot, "--plot")
    timelines, failed = [], 0
    for file in files:
        try:
            detector = predictor.scorer           # --vad/--max-segment, else the model's own
            tl = predictor.predict_timeline(file, vad=detector.vad, max_segment_s=detector.max_segment_s,
                                            segment_s=s.segment_seconds, batch_size=s.batch_size,
                                            progress=s.progress, same_speaker=s.same_speaker,
                                            speakers=s.speakers)
        except AudioError as exc:
            err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            failed += 1
            continue
        timelines.append(tl)
        if args.plot:
            err.print(f"plot: {tl.plot(pngs[file])}", highlight=False, markup=False, soft_wrap=True)
    if args.output:
        err.print(f"timeline: {write_timelines(timelines, args.output)}", highlight=False, markup=False,
                  soft_wrap=True)
    elif s.format == "json":
        print(to_json([t.to_dict() for t in timelines] if len(files) > 1 else
                      (timelines[0].to_dict() if timelines else {}), indent=2))
    elif s.format == "csv":
        print(timelines_csv(timelines), end="")
    for tl in timelines:
        if not tl.segments:     # said in every format, so an empty table or list is not a puzzle
            why = (tl.reason.split(": ", 1)[-1] if tl.reason      # too short or silent: nothing to score
                   else "--vad none scores fixed segments anyway")
            err.print(f"{tl.file}: no speech found in {tl.duration_s:.1f} s (vad {tl.vad}); {why}",
                      highlight=False, markup=False, soft_wrap=True)
    if not args.output and s.format == "table":
        for tl in (t for t in timelines if t.segments):
            common.console.print(timeline_table(tl, s.same_speaker and len(tl.segments) > 1))
    if s.same_speaker:
        note_voices([sum(g.voice == v for g in tl.segments) for tl in timelines
                     for v in sorted({g.voice for g in tl.segments})] if s.speakers == "voice" else
                    [len(tl.segments) for tl in timelines])
    return 1 if failed else 0


def timeline_table(tl: Timeline, adapted: bool = False) -> Table:
    """One timeline's segments as a terminal table: times, emotion, confidence, runners-up
    (``adapted``: answered as one voice, ``--same-speaker``)."""
    from rich import box
    from rich.table import Table

    n = len(tl.segments)
    one = ((f", {len({g.voice for g in tl.segments})} voice(s) told apart, each adapted to" if tl.voices else
            ", adapted to one speaker") if adapted else "")
    table = Table(title=escape(f"{tl.file}: {tl.duration_s:.1f} s, {n} segment{'' if n == 1 else 's'} "
                               f"(vad {tl.vad}){one}"),
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for col in ("start s", "end s", *(["voice"] if tl.voices else []), "emotion", "confidence", "runners-up"):
        table.add_column(col, justify="left" if col in ("emotion", "runners-up") else "right")
    for seg in tl.segments:
        top = sorted(seg.probabilities.items(), key=lambda kv: -kv[1])[1:3]
        table.add_row(f"{seg.start:.2f}", f"{seg.end:.2f}", *([str(seg.voice)] if tl.voices else []),
                      seg.emotion + ("?" if seg.uncertain else ""),
                      f"{seg.confidence:.2f}", "  ".join(f"{k} {v:.2f}" for k, v in top))
    if any(seg.uncertain for seg in tl.segments):
        table.caption = UNCERTAIN_CAPTION
    return table


def add_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register predict (``add`` makes a subcommand's parser)."""
    p = add("predict", help="predict the emotion of audio files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or glob patterns")
    add_model_option(p)
    batch, long = argument_group(p, BATCH_JOBS), argument_group(p, LONG_RECORDINGS)
    batch.add_argument("--output", "-o", metavar="FILE", help="write rows to FILE (.csv or .jsonl) as the job "
                       "runs, flushed per batch; progress on stderr")
    batch.add_argument("--resume", action="store_true", help="continue a job: skip files already in --output")
    add_force_option(batch, "start an existing --output over, replace a timeline or plot file serkit did not write")
    long.add_argument("--timeline", action="store_true",
                      help="emotions over time: speech segments, each with an emotion and probabilities")
    long.add_argument("--plot", metavar="PNG", help="plot emotion probabilities over time to PNG "
                      "(a folder for several files, or a name without .png: one plot per recording)")
    add_dataclass_arguments(p, PredictSettings, exclude=DETECTOR)
    add_dataclass_arguments(p, PredictSettings, only=DETECTOR, unset=True)   # None: the model's own, for files
    p.set_defaults(func=cmd_predict)

"""The ``serkit`` command: thin subcommands over the Python API.

Library errors (ValueError and its kin, FileNotFoundError) become one readable line on stderr
and exit status 2; nothing in the library calls ``sys.exit``.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from serkit.version import __version__

console = Console()
err_console = Console(stderr=True)


def cmd_prepare(args: argparse.Namespace) -> int:
    from serkit.prepare import prepare, print_summary

    not_a_folder(args.output, "--output")
    result = prepare(args.roots, args.output, corpus=args.corpus, emotions=args.emotions, force=args.force)
    print_summary(result, console, verbose=args.verbose)
    if not result.utterances:
        err_console.print("error: no labelled clips found; check the folder or pass --corpus")
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from serkit.config import TrainConfig
    from serkit.training import train

    options = json.loads(args.model_options) if args.model_options else {}
    options.update(pretrained_options(args))
    cfg = TrainConfig(
        model=args.model, split=args.split, test_corpus=args.test_corpus, seed=args.seed,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        monitor=args.monitor, augment=not args.no_augment, model_options=options,
        emotions=resolve_list(args.emotions), accelerator=args.accelerator, devices=args.devices,
        num_nodes=args.num_nodes, strategy=args.strategy, num_workers=args.num_workers,
        clip_seconds=args.clip_seconds, vad=args.vad, cache_dir=args.cache_dir, progress=not args.no_progress,
        mixup=args.mixup, speed_perturb=not args.no_speed_perturb,
        test_size=args.test_size, val_size=args.val_size,
        balance_corpora=args.balance_corpora, corpus_label_mask=not args.no_corpus_label_mask,
    )
    report = train(args.manifest, args.out, cfg, resume=args.resume, force=args.force)
    if report:
        console.print(f"test: accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
                      f"UAR {report['uar']:.3f}  ({report['n']} clips)")
        for corpus, m in report["per_corpus"].items():
            console.print(f"  {corpus}: accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}  ({m['n']} clips)")
    console.print(f"bundle: {args.out}/bundle   report: {args.out}/eval/report.md", highlight=False, markup=False)
    return 0


def pretrained_options(args: argparse.Namespace) -> dict:
    """--backbone, --freeze, --pooling, --layer-weights/--last-layer, --encoder-lr as model options."""
    given = {"backbone": args.backbone, "freeze": args.freeze, "pooling": args.pooling,
             "layer_weights": args.layer_weights, "encoder_lr": args.encoder_lr}
    given = {k: v for k, v in given.items() if v is not None}
    if given and args.model != "pretrained":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} only apply to pretrained encoders; add --model pretrained")
    return given


def resolve_list(spec: str | None) -> list[str] | None:
    from serkit.emotions import resolve_emotions

    return None if spec in (None, "manifest") else list(resolve_emotions(spec))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from serkit.evaluate_cmd import evaluate_bundle
    from serkit.inference import load_model

    if len(args.paths) > 2:
        raise ValueError("evaluate takes [BUNDLE] MANIFEST")
    bundle, manifest = (args.paths if len(args.paths) == 2 else (args.model, args.paths[0]))
    predictor = load_model(bundle)
    r = evaluate_bundle(predictor, manifest, args.split, args.out, force=args.force)
    console.print(f"{predictor.name} on {args.split} ({r['n']} clips): accuracy {r['accuracy']:.3f}  "
                  f"macro-F1 {r['macro_f1']:.3f}  UAR {r['uar']:.3f}  ECE {r['calibration']['ece_after']:.3f}",
                  highlight=False, markup=False)
    for corpus, m in r["per_corpus"].items():
        console.print(f"  {corpus}: accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}  ({m['n']} clips)", markup=False)
    if args.out:
        console.print(f"report: {args.out}/report.md", highlight=False, markup=False)
    return 0


def expand_paths(items: Sequence[str]) -> list[str]:
    """Files, folders (searched recursively for audio) and glob patterns, in a stable order.

    A path that exists is taken as it is, whatever characters its name holds
    (``interview [take 2].wav``); only a path that does not exist is read as a pattern.
    """
    import glob
    from pathlib import Path

    from serkit.corpora.base import audio_files, is_audio_name

    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += [str(f) for f in audio_files(p) if is_audio_name(f)]
        elif p.suffix.lower() == ".csv" and p.is_file():   # a manifest: its path column
            from serkit.batch import manifest_paths
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

    check_predict_flags(args)
    predictor = load_model(args.model, runtime=args.runtime)   # a shipped model is named as on the page
    files = expand_paths(args.paths)
    if not files:
        raise FileNotFoundError("no audio files found in " + ", ".join(args.paths))
    if args.timeline:
        return predict_timelines(args, predictor, files)
    if args.output:
        not_a_folder(args.output, "--output")
        return predict_batch(args, predictor, files)
    results = []
    for group in budget_batches(files, args.batch_size):   # bounded audio in memory per batch
        results += predictor.predict_files([files[i] for i in group], batch_size=args.batch_size)
    if args.format == "json":
        print(to_json([prediction_dict(r) for r in results], indent=2))
    elif args.format == "csv":
        import csv

        from serkit.batch import csv_columns, csv_row
        w = csv.writer(sys.stdout)
        w.writerow(csv_columns(predictor.labels))
        w.writerows(csv_row(r, predictor.labels) for r in results)
    else:
        folder, table = predictions_table(results, predictor.name, console.width)
        if folder:      # once, whole, rather than on every row
            console.print(f"files in {folder}:", highlight=False, markup=False, soft_wrap=True)
        console.print(table)
    failed = sum(1 for r in results if r.error)
    if failed:
        err_console.print(f"{failed} of {len(results)} file(s) could not be scored")
    return 1 if failed else 0


def check_predict_flags(args: argparse.Namespace) -> None:
    """Flags that only make sense together: refuse, saying why, rather than ignore one."""
    if not args.timeline:
        for flag, value in (("--plot", args.plot), ("--segment-seconds", args.segment_seconds)):
            if value is not None:
                raise ValueError(f"{flag} belongs to emotion timelines of long recordings: add --timeline")
    if args.output and not args.timeline and args.output.lower().endswith(".json"):
        raise ValueError(f"--output {args.output}: a batch job appends rows as it goes (so a killed job can "
                         "--resume), which a .json array cannot do; write .jsonl (one JSON object a line) "
                         "or .csv, or print one JSON array with --format json > FILE")
    if not args.output and args.resume:
        raise ValueError("--resume continues a batch job: add --output FILE")
    if not args.output and args.engine != "local":
        raise ValueError(f"--engine {args.engine} runs batch jobs: add --output FILE")


def predict_batch(args: argparse.Namespace, predictor, files: list[str]) -> int:
    """serkit predict --output FILE: a resumable batch job (see serkit.batch)."""
    from serkit.batch import run_batch

    if args.engine == "ray":
        from serkit.ray_engine import run_ray
        summary = run_ray(args.model, files, args.output, labels=predictor.labels, runtime=args.runtime,
                          batch_size=args.batch_size, actors=args.actors, address=args.ray_address,
                          resume=args.resume, progress=not args.no_progress, force=args.force, inputs=args.paths)
    else:
        summary = run_batch(predictor, files, args.output, batch_size=args.batch_size, workers=args.workers,
                            resume=args.resume, progress=not args.no_progress, force=args.force,
                            inputs=args.paths)
    err_console.print(summary.line(), highlight=False, markup=False, soft_wrap=True)
    return 1 if summary.failed else 0


def predict_timelines(args: argparse.Namespace, predictor, files: list[str]) -> int:
    """serkit predict --timeline: emotions over time of long recordings (see serkit.timeline)."""
    from pathlib import Path

    from rich import box
    from rich.table import Table

    from serkit.audio import AudioError
    from serkit.safety import check_output_file, to_json
    from serkit.timeline import is_timeline_file, timelines_csv, write_timelines

    if args.resume:
        raise ValueError("--resume is for batch jobs, not --timeline")
    if args.output and Path(args.output).suffix not in (".json", ".csv"):
        raise ValueError(f"--output {args.output}: a timeline is written to .json or .csv")
    not_a_folder(args.output, "--output")
    plot_folder = args.plot and (len(files) > 1 or not args.plot.lower().endswith(".png"))
    pngs = {file: Path(args.plot) / f"{Path(file).stem}.png" if plot_folder else Path(args.plot)
            for file in files} if args.plot else {}
    # before any work: replace only timelines and plots serkit wrote (or any file, with --force)
    targets = ([(args.output, "--output")] if args.output else []) + [(png, "--plot") for png in pngs.values()]
    for path, flag in targets:
        check_output_file(path, inputs=files, force=args.force, ours=is_timeline_file, flag=flag)
    if args.plot and not plot_folder:
        not_a_folder(args.plot, "--plot")
    timelines, failed = [], 0
    for file in files:
        try:
            tl = predictor.predict_timeline(file, vad=args.vad, max_segment_s=args.max_segment,
                                            segment_s=args.segment_seconds, batch_size=args.batch_size,
                                            progress=not args.no_progress)
        except AudioError as exc:
            err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            failed += 1
            continue
        timelines.append(tl)
        if args.plot:
            err_console.print(f"plot: {tl.plot(pngs[file])}", highlight=False, markup=False, soft_wrap=True)
    if args.output:
        err_console.print(f"timeline: {write_timelines(timelines, args.output)}", highlight=False, markup=False,
                          soft_wrap=True)
    elif args.format == "json":
        print(to_json([t.to_dict() for t in timelines] if len(files) > 1 else
                      (timelines[0].to_dict() if timelines else {}), indent=2))
    elif args.format == "csv":
        print(timelines_csv(timelines), end="")
    for tl in timelines:
        if not tl.segments:     # said in every format, so an empty table or list is not a puzzle
            why = (tl.reason.split(": ", 1)[-1] if tl.reason      # too short or silent: nothing to score
                   else "--vad none scores fixed segments anyway")
            err_console.print(f"{tl.file}: no speech found in {tl.duration_s:.1f} s (vad {tl.vad}); {why}",
                              highlight=False, markup=False, soft_wrap=True)
    if not args.output and args.format == "table":
        for tl in (t for t in timelines if t.segments):
            table = Table(title=escape(f"{tl.file}: {tl.duration_s:.1f} s, {len(tl.segments)} segments (vad {tl.vad})"),
                          box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
            for col in ("start s", "end s", "emotion", "confidence", "runners-up"):
                table.add_column(col, justify="left" if col in ("emotion", "runners-up") else "right")
            for seg in tl.segments:
                top = sorted(seg.probabilities.items(), key=lambda kv: -kv[1])[1:3]
                table.add_row(f"{seg.start:.2f}", f"{seg.end:.2f}", seg.emotion, f"{seg.confidence:.2f}",
                              "  ".join(f"{k} {v:.2f}" for k, v in top))
            console.print(table)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from serkit.export import export_onnx

    if not args.onnx:
        raise ValueError("name a format to export to: --onnx (the only one so far)")
    r = export_onnx(args.bundle, args.output, int8=args.int8, exporter=args.exporter, opset=args.opset,
                    force=args.force)
    for precision, name in r.files.items():
        p = r.parity[precision]
        size = (r.folder / name).stat().st_size / 1e6
        console.print(f"{r.folder / name}  {precision}  {size:.2f} MB  max |p - p_torch| "
                      f"{p['max_abs_prob_diff']:.1e}  top-1 agreement {p['top1_agreement']:.0%}",
                      highlight=False, markup=False, soft_wrap=True)
    console.print(f"use it: serkit predict --model {r.folder} FILES", highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    from serkit.model_card import model_card_rows

    title, rows = model_card_rows(args.bundle)
    grid = Table.grid(padding=(0, 1, 0, 0))         # long values wrap under themselves
    grid.add_column(no_wrap=True, min_width=15)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row("  " + escape(key), escape(value))
    console.print(title, highlight=False, markup=False, soft_wrap=True)
    console.print(grid, highlight=False)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serkit.web.serve import exit_at_once, serve

    stopped = serve(args.model, host=args.host, port=args.port, threads=args.threads,
                    max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                    torch_threads=args.torch_threads, vad=args.vad, access_log=not args.quiet,
                    connection_limit=args.connection_limit, channel_timeout=args.channel_timeout,
                    request_timeout=args.request_timeout, cleanup_interval=args.cleanup_interval,
                    announce=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
    if stopped:          # SIGTERM/SIGINT: all closed; skip unloading libraries (`docker stop` stays fast)
        exit_at_once(0)
    return 0


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (argparse's ArgumentDefaultsHelpFormatter, but
    not for flags, options without a default, or help that already names it); epilogs keep
    their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text.lower() or not action.option_strings
                or action.default is None or action.default is False or action.default == argparse.SUPPRESS
                or action.nargs == 0):
            return text
        return text + " (default: %(default)s)"


EXAMPLES = """examples:
  serkit predict my.wav                       the emotion of one clip, with the shipped model
  serkit predict recordings/ -f csv > out.csv every audio file in a folder, as CSV
  serkit predict --timeline call.wav --plot call.png
                                              emotions over time in a long recording
  serkit predict recordings/ -o preds.jsonl   a resumable batch job (rows written as it goes)
  serkit serve                                the web page and JSON API on http://127.0.0.1:5000/
  serkit info                                 the model card: data, held-out speakers, metrics

'serkit COMMAND --help' shows a command's options."""


def add_force_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true",
                   help=f"write even where serkit did not write before: {what} (nothing else is touched; "
                        "an output that is an input is always refused)")


def not_a_folder(path: str | None, flag: str) -> None:
    """An output file that names an existing folder is refused before any work is done."""
    if path and os.path.isdir(path):
        raise IsADirectoryError(f"{flag} {path} is a folder; name a file")


def bounded(kind: type, low: float, high: float | None = None):
    """An argparse type: a ``kind`` number from ``low`` to ``high``, else a usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value != value or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give "
                                             + (f"{low:g} to {high:g}" if high is not None else f"at least {low:g}"))
        return value
    return parse


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", metavar="BUNDLE", default=None,
                   help="model bundle folder (default: the shipped default model)")


def build_parser() -> argparse.ArgumentParser:
    from serkit.corpora import READERS

    parser = argparse.ArgumentParser(prog="serkit", description="Speech emotion recognition toolkit.",
                                     epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"serkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, formatter_class=HelpFormatter)

    p = add("prepare", help="scan corpus folders and write a manifest CSV")
    p.add_argument("roots", nargs="+", metavar="ROOT", help="corpus folders or CSV lists of clips")
    p.add_argument("-o", "--output", default="manifest.csv", help="manifest to write")
    p.add_argument("--corpus", choices=sorted(READERS), help="read every ROOT with this reader, no detection")
    p.add_argument("--emotions", default="default",
                   help="'default' (angry,happy,sad,fearful,disgust,neutral), 'all', or a comma list; "
                        "default: %(default)s")
    p.add_argument("-v", "--verbose", action="store_true", help="list every skipped file")
    add_force_option(p, "replace a -o file that is not a manifest serkit wrote")
    p.set_defaults(func=cmd_prepare)

    from serkit.config import MODELS, MONITORS, SERVE_DEFAULTS, SPLITS, VADS, TrainConfig

    d = TrainConfig()
    p = add("train", help="train a model on a manifest into a run folder")
    p.add_argument("manifest", help="manifest CSV from serkit prepare")
    p.add_argument("--out", "-o", required=True, help="run folder (bundle, reports, checkpoints)")
    p.add_argument("--model", default=d.model, choices=MODELS,
                   help="model family: cnn_lstm, pretrained (a Hugging Face encoder) or encoder_head (a head "
                        "on a frozen ONNX encoder, e.g. the shipped serkit:whisper-base-l4)")
    p.add_argument("--split", default=d.split, choices=SPLITS,
                   help="speaker: no speaker in two parts; random: LEAKY utterance split; corpus: leave one corpus out")
    p.add_argument("--test-corpus", metavar="CORPUS", help="held-out corpus for --split corpus")
    p.add_argument("--test-size", type=float, default=d.test_size, help="share of speakers for test")
    p.add_argument("--val-size", type=float, default=d.val_size, help="share of speakers for validation")
    p.add_argument("--emotions", default="manifest",
                   help="labels: 'manifest' (every emotion it holds), 'default', 'all' or a comma list; "
                        "default: %(default)s")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split, initialisation and augmentation")
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    p.add_argument("--monitor", default=d.monitor, choices=MONITORS, help="validation metric that picks the epoch")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per training step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--no-augment", action="store_true", help="turn off training-time augmentation")
    p.add_argument("--model-options", metavar="JSON", help='JSON of architecture settings, e.g. \'{"pooling": "mean"}\'')
    p.add_argument("--accelerator", default=d.accelerator, help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--devices", default=d.devices, type=lambda v: int(v) if v.isdigit() else v,
                   help="devices per node (an int, or 'auto')")
    p.add_argument("--num-nodes", type=int, default=d.num_nodes, help="machines (Lightning num_nodes)")
    p.add_argument("--strategy", default=d.strategy, help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="DataLoader workers")
    p.add_argument("--clip-seconds", type=float, default=d.clip_seconds, help="model window in seconds")
    p.add_argument("--vad", choices=VADS, default=d.vad, help=TrainConfig.__dataclass_fields__["vad"].metadata["help"])
    p.add_argument("--cache-dir", default=d.cache_dir, help="decoded-audio cache folder ('' for none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--mixup", type=float, default=d.mixup, help="mixup alpha (0: off)")
    p.add_argument("--no-speed-perturb", action="store_true", help="no speed perturbation in augmentation")
    p.add_argument("--balance-corpora", action="store_true",
                   help="draw training clips so that every corpus weighs the same per epoch")
    p.add_argument("--no-corpus-label-mask", action="store_true",
                   help="let clips teach the classes their corpus does not have (off: they are left out of the loss)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    add_force_option(p, "start over in an --out that holds a run (its files are removed first), or train "
                        "into a folder holding other files")
    g = p.add_argument_group("pretrained encoders (--model pretrained)")
    g.add_argument("--backbone", metavar="NAME_OR_PATH",
                   help="Hugging Face model name or local folder (default: facebook/wav2vec2-base); "
                        "wav2vec2, HuBERT, WavLM, data2vec-audio or Whisper")
    g.add_argument("--freeze", metavar="head|top:N|none",
                   help="head: only the head trains, on cached embeddings (default); top:N: also the top N "
                        "encoder layers; none: full fine-tune (the convolutional front-end stays frozen)")
    g.add_argument("--pooling", choices=["mean", "stats", "attention"],
                   help="over real frames: mean (default), stats (mean and std) or attention")
    g.add_argument("--layer-weights", dest="layer_weights", action="store_const", const=True,
                   help="learned weighted sum over all hidden layers (default)")
    g.add_argument("--last-layer", dest="layer_weights", action="store_const", const=False,
                   help="use the last hidden layer only")
    g.add_argument("--encoder-lr", type=float, help="learning rate of trainable encoder layers (default: --lr / 10)")
    p.set_defaults(func=cmd_train)

    p = add("evaluate", help="evaluate a bundle on a manifest split (metrics, plots, reports)",
            usage="%(prog)s [-h] [--model BUNDLE] [--split SPLIT] [--out DIR] [BUNDLE] MANIFEST")
    p.add_argument("paths", nargs="+", metavar="[BUNDLE] MANIFEST",
                   help="a bundle folder (optional; default model otherwise) and a manifest")
    add_model_option(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"], metavar="SPLIT",
                   help="part of the manifest's split to score: train, val, test or all")
    p.add_argument("--out", "-o", metavar="DIR", help="folder for report.json, report.md and plots")
    add_force_option(p, "write the report into an --out folder holding other files")
    p.set_defaults(func=cmd_evaluate)

    p = add("predict", help="predict the emotion of audio files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or glob patterns")
    add_model_option(p)
    p.add_argument("--format", "-f", choices=["table", "json", "csv"], default="table",
                   help="what to print: a table (probabilities to 2 decimals), or JSON or CSV (4 decimals)")
    p.add_argument("--batch-size", type=bounded(int, 1), default=32, help="files (or timeline windows) per model call")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="torch (a bundle) or onnx (a folder from serkit export --onnx); auto: by the folder; default: %(default)s")
    g = p.add_argument_group("batch jobs (PATH may also be a manifest CSV with a File/path column)")
    g.add_argument("--output", "-o", metavar="FILE", help="write rows to FILE (.csv or .jsonl) as the job "
                   "runs, flushed per batch; progress on stderr")
    g.add_argument("--resume", action="store_true", help="continue a job: skip files already in --output")
    add_force_option(g, "start an existing --output over, replace a timeline or plot file serkit did not write")
    g.add_argument("--workers", type=int, default=0, help="processes decoding audio (0: in this process)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local, or ray: Ray Data with model actors (pip install 'serkit[ray]')")
    g.add_argument("--actors", type=int, default=2, help="--engine ray: model actors")
    g.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="--engine ray: a cluster to join (auto, ray://HOST:10001); default: a local Ray")
    g = p.add_argument_group("long recordings (--timeline; --output FILE.json|.csv)")
    g.add_argument("--timeline", action="store_true",
                   help="emotions over time: speech segments, each with an emotion and probabilities")
    g.add_argument("--vad", choices=VADS, default="auto",
                   help="speech detector: silero (needs serkit[timeline]), energy (level above the noise "
                        "floor), none (fixed segments); auto: silero when installed, else energy; "
                        "default: %(default)s")
    g.add_argument("--max-segment", type=float, default=10.0, metavar="SECONDS",
                   help="split longer speech segments into equal parts")
    g.add_argument("--segment-seconds", type=float, default=None, metavar="SECONDS",
                   help="segment length with --vad none (default: the model's window)")
    g.add_argument("--plot", metavar="PNG", help="plot emotion probabilities over time to PNG "
                   "(a folder when there are several files)")
    p.set_defaults(func=cmd_predict)

    p = add("export", help="export a bundle to ONNX (fp32, optionally int8)")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (waveforms in, logits out)")
    p.add_argument("--int8", action="store_true", help="also write a dynamically quantised int8 model")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="torch.onnx exporter: dynamo (~30 s) or the legacy torchscript (~1 s); default: %(default)s")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18 dynamo, 17 torchscript)")
    add_force_option(p, "write model.onnx and config.json into a -o folder holding other files")
    p.set_defaults(func=cmd_export)

    p = add("info", help="print a bundle's model card (training data, held-out speakers, test metrics)")
    p.add_argument("bundle", nargs="?", default=None, help="bundle folder (default: the shipped model)")
    p.set_defaults(func=cmd_info)

    p = add("serve", help="serve the web page and JSON API (waitress)")
    p.add_argument("--model", "-m", metavar="[NAME=]BUNDLE", action="append", default=[],
                   help="bundle folder to serve; repeat for several (default: the shipped default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; "
                   "0.0.0.0 for every interface)")
    p.add_argument("--port", type=bounded(int, 0, 65535), default=5000,
                   help="default: %(default)s; 0 picks a free port (printed at start-up)")
    p.add_argument("--threads", type=bounded(int, 1, 256), default=4, help="request threads (default: %(default)s)")
    p.add_argument("--torch-threads", type=bounded(int, 1, 1024), default=1,
                   help="threads one prediction may use (default: %(default)s; requests run in parallel instead)")
    p.add_argument("--max-upload-mb", type=bounded(float, 0.001, 4096), default=20.0,
                   help="largest upload (default: %(default)s MB)")
    p.add_argument("--max-seconds", type=bounded(float, 0.5, 36000), default=120.0,
                   help="longest audio (default: %(default)s s)")
    g = p.add_argument_group("connections (waitress; put a reverse proxy in front of a public server, see docs/web.md)")
    g.add_argument("--connection-limit", type=bounded(int, 1, 100000), default=SERVE_DEFAULTS["connection_limit"],
                   help="open connections at most; more wait in the listen queue (default: %(default)s)")
    g.add_argument("--channel-timeout", type=bounded(int, 1, 86400), default=SERVE_DEFAULTS["channel_timeout"],
                   help="seconds before a connection that sends nothing is closed (default: %(default)s)")
    g.add_argument("--request-timeout", type=bounded(int, 1, 86400), default=SERVE_DEFAULTS["request_timeout"],
                   help="seconds for a request to arrive whole, else its connection is closed: a client "
                        "trickling bytes cannot hold a connection (default: %(default)s)")
    g.add_argument("--cleanup-interval", type=bounded(int, 1, 3600), default=SERVE_DEFAULTS["cleanup_interval"],
                   help="seconds between checks of the two timeouts (default: %(default)s)")
    p.add_argument("--vad", choices=VADS, default=None,
                   help="speech detector when a request names none (default: each model's own, silero for "
                        "the shipped ones; energy = any loud sound; none = the clip in pieces of one window)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no access log (by default every request is logged to stderr with its status and time)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):   # a file name that is not UTF-8 prints as escapes, never fails
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        status = args.func(args)
        sys.stdout.flush()    # a reader that went away shows here, not at the interpreter's exit
        return status
    except BrokenPipeError:
        # The reader went away (``serkit predict ... | head``): stop quietly, and point stdout at
        # /dev/null so that the interpreter's last flush does not complain either.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):   # stdout is not a file (a test's capture)
            pass
        return 0
    except (ValueError, OSError) as exc:   # OSError: missing files, folders, permissions, a full disk
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130

"""The ``serkit`` command: thin subcommands over the Python API.

Library errors (ValueError and its kin, FileNotFoundError) become one readable line on stderr
and exit status 2; nothing in the library calls ``sys.exit``.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from serkit import __version__

console = Console()
err_console = Console(stderr=True)


def cmd_prepare(args: argparse.Namespace) -> int:
    from serkit.prepare import prepare, print_summary

    not_a_folder(args.output, "--output")
    result = prepare(args.roots, args.output, corpus=args.corpus, emotions=args.emotions)
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
        clip_seconds=args.clip_seconds, cache_dir=args.cache_dir, progress=not args.no_progress,
        mixup=args.mixup, speed_perturb=not args.no_speed_perturb,
        test_size=args.test_size, val_size=args.val_size,
    )
    report = train(args.manifest, args.out, cfg, resume=args.resume)
    if report:
        console.print(f"test: accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
                      f"UAR {report['uar']:.3f}  ({report['n']} clips)")
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
    r = evaluate_bundle(predictor, manifest, args.split, args.out)
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
    import csv
    import json

    from rich.table import Table

    from serkit.batch import budget_batches
    from serkit.inference import load_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: give at least 1")
    predictor = load_model(args.model, runtime=args.runtime)
    files = expand_paths(args.paths)
    if not files:
        raise FileNotFoundError("no audio files found in " + ", ".join(args.paths))
    if args.timeline:
        return predict_timelines(args, predictor, files)
    if args.output:
        not_a_folder(args.output, "--output")
        return predict_batch(args, predictor, files)
    if args.resume:
        raise ValueError("--resume continues a batch job: add --output FILE")
    if args.engine != "local":
        raise ValueError(f"--engine {args.engine} runs batch jobs: add --output FILE")
    results = []
    for group in budget_batches(files, args.batch_size):   # bounded audio in memory per batch
        results += predictor.predict_files([files[i] for i in group], batch_size=args.batch_size)
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["file", "emotion", "confidence", *predictor.labels, "duration_s", "error"])
        for r in results:
            w.writerow([r.file, r.emotion or "", f"{r.confidence:.4f}" if r.confidence is not None else "",
                        *[f"{r.probabilities[l]:.4f}" if r.probabilities else "" for l in predictor.labels],
                        f"{r.duration_s:.2f}" if r.duration_s is not None else "", r.error or ""])
    else:
        table = Table(title=f"Predictions ({predictor.name})")
        for col in ("file", "emotion", "confidence", "top 3"):
            table.add_column(col)
        for r in results:
            if r.error:
                table.add_row(escape(r.file), "[red]error[/]", "", escape(r.error))
                continue
            top = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[:3]
            table.add_row(escape(r.file), escape(r.emotion), f"{r.confidence:.2f}",
                          escape("  ".join(f"{k} {v:.2f}" for k, v in top)))
        console.print(table)
    failed = sum(1 for r in results if r.error)
    if failed:
        err_console.print(f"{failed} of {len(results)} file(s) could not be scored")
    return 1 if failed else 0


def predict_batch(args: argparse.Namespace, predictor, files: list[str]) -> int:
    """serkit predict --output FILE: a resumable batch job (see serkit.batch)."""
    from serkit.batch import run_batch

    if args.engine == "ray":
        from serkit.ray_engine import run_ray
        summary = run_ray(args.model, files, args.output, labels=predictor.labels, runtime=args.runtime,
                          batch_size=args.batch_size, actors=args.actors, address=args.ray_address,
                          resume=args.resume, progress=not args.no_progress)
    else:
        summary = run_batch(predictor, files, args.output, batch_size=args.batch_size, workers=args.workers,
                            resume=args.resume, progress=not args.no_progress)
    err_console.print(summary.line(), highlight=False, markup=False, soft_wrap=True)
    return 1 if summary.failed else 0


def predict_timelines(args: argparse.Namespace, predictor, files: list[str]) -> int:
    """serkit predict --timeline: emotions over time of long recordings (see serkit.timeline)."""
    import json
    from pathlib import Path

    from rich.table import Table

    from serkit.audio import AudioError
    from serkit.timeline import timelines_csv, write_timelines

    if args.resume:
        raise ValueError("--resume is for batch jobs, not --timeline")
    if args.output and Path(args.output).suffix not in (".json", ".csv"):
        raise ValueError(f"--output {args.output}: a timeline is written to .json or .csv")
    not_a_folder(args.output, "--output")
    plot_folder = args.plot and (len(files) > 1 or not args.plot.lower().endswith(".png"))
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
            png = Path(args.plot) / f"{Path(file).stem}.png" if plot_folder else Path(args.plot)
            err_console.print(f"plot: {tl.plot(png)}", highlight=False, markup=False, soft_wrap=True)
    if args.output:
        err_console.print(f"timeline: {write_timelines(timelines, args.output)}", highlight=False, markup=False,
                          soft_wrap=True)
    elif args.format == "json":
        print(json.dumps([t.to_dict() for t in timelines] if len(files) > 1 else
                         (timelines[0].to_dict() if timelines else {}), indent=2))
    elif args.format == "csv":
        print(timelines_csv(timelines), end="")
    else:
        for tl in timelines:
            table = Table(title=escape(f"{tl.file}: {tl.duration_s:.1f} s, {len(tl.segments)} segments (vad {tl.vad})"))
            for col in ("start", "end", "emotion", "confidence", "top 3"):
                table.add_column(col)
            for seg in tl.segments:
                top = sorted(seg.probabilities.items(), key=lambda kv: -kv[1])[:3]
                table.add_row(f"{seg.start:.2f}", f"{seg.end:.2f}", escape(seg.emotion), f"{seg.confidence:.2f}",
                              escape("  ".join(f"{k} {v:.2f}" for k, v in top)))
            console.print(table)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from serkit.export import export_onnx

    if not args.onnx:
        raise ValueError("name a format to export to: --onnx (the only one so far)")
    r = export_onnx(args.bundle, args.output, int8=args.int8, exporter=args.exporter, opset=args.opset)
    for precision, name in r.files.items():
        p = r.parity[precision]
        size = (r.folder / name).stat().st_size / 1e6
        console.print(f"{r.folder / name}  {precision}  {size:.2f} MB  max |p - p_torch| "
                      f"{p['max_abs_prob_diff']:.1e}  top-1 agreement {p['top1_agreement']:.0%}",
                      highlight=False, markup=False, soft_wrap=True)
    console.print(f"use it: serkit predict --model {r.folder} FILES", highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from serkit.model_card import model_card

    console.print(model_card(args.bundle), highlight=False, markup=False)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serkit.web.serve import serve

    serve(args.model, host=args.host, port=args.port, threads=args.threads,
          max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
          torch_threads=args.torch_threads, vad=args.vad,
          connection_limit=args.connection_limit, channel_timeout=args.channel_timeout,
          request_timeout=args.request_timeout, cleanup_interval=args.cleanup_interval,
          announce=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
    return 0


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

    parser = argparse.ArgumentParser(prog="serkit", description="Speech emotion recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"serkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="scan corpus folders and write a manifest CSV")
    p.add_argument("roots", nargs="+", metavar="ROOT", help="corpus folders or CSV lists of clips")
    p.add_argument("-o", "--output", default="manifest.csv", help="manifest to write (default: %(default)s)")
    p.add_argument("--corpus", choices=sorted(READERS), help="read every ROOT with this reader, no detection")
    p.add_argument("--emotions", default="default",
                   help="'default' (angry,happy,sad,fearful,disgust,neutral), 'all', or a comma list")
    p.add_argument("-v", "--verbose", action="store_true", help="list every skipped file")
    p.set_defaults(func=cmd_prepare)

    from serkit.config import MONITORS, SERVE_DEFAULTS, SPLITS, VADS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a model on a manifest into a run folder")
    p.add_argument("manifest", help="manifest CSV from serkit prepare")
    p.add_argument("--out", "-o", required=True, help="run folder (bundle, reports, checkpoints)")
    p.add_argument("--model", default=d.model, choices=["cnn_lstm", "pretrained"], help="model family")
    p.add_argument("--split", default=d.split, choices=SPLITS,
                   help="speaker: no speaker in two parts (default); random: LEAKY utterance split; corpus: leave one corpus out")
    p.add_argument("--test-corpus", help="held-out corpus for --split corpus")
    p.add_argument("--test-size", type=float, default=d.test_size, help="share of speakers for test")
    p.add_argument("--val-size", type=float, default=d.val_size, help="share of speakers for validation")
    p.add_argument("--emotions", default="manifest",
                   help="labels: 'manifest' (every emotion it holds), 'default', 'all' or a comma list")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    p.add_argument("--monitor", default=d.monitor, choices=MONITORS, help="validation metric that picks the epoch")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--no-augment", action="store_true", help="turn off training-time augmentation")
    p.add_argument("--model-options", help='JSON of architecture settings, e.g. \'{"pooling": "mean"}\'')
    p.add_argument("--accelerator", default=d.accelerator, help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--devices", default=d.devices, type=lambda v: int(v) if v.isdigit() else v,
                   help="devices per node (an int, or 'auto')")
    p.add_argument("--num-nodes", type=int, default=d.num_nodes)
    p.add_argument("--strategy", default=d.strategy, help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="DataLoader workers")
    p.add_argument("--clip-seconds", type=float, default=d.clip_seconds, help="model window in seconds")
    p.add_argument("--cache-dir", default=d.cache_dir, help="decoded-audio cache folder ('' for none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--mixup", type=float, default=d.mixup, help="mixup alpha (0: off, the default)")
    p.add_argument("--no-speed-perturb", action="store_true", help="no speed perturbation in augmentation")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
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

    p = sub.add_parser("evaluate", help="evaluate a bundle on a manifest split (metrics, plots, reports)")
    p.add_argument("paths", nargs="+", metavar="[BUNDLE] MANIFEST",
                   help="a bundle folder (optional; default model otherwise) and a manifest")
    add_model_option(p)
    p.add_argument("--split", default="test", help="train, val, test (default) or all")
    p.add_argument("--out", "-o", help="folder for report.json, report.md and plots")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict the emotion of audio files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or glob patterns")
    add_model_option(p)
    p.add_argument("--format", "-f", choices=["table", "json", "csv"], default="table")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="torch (a bundle) or onnx (a folder from serkit export --onnx); auto: by the folder")
    g = p.add_argument_group("batch jobs (PATH may also be a manifest CSV with a File/path column)")
    g.add_argument("--output", "-o", metavar="FILE", help="write rows to FILE (.csv or .jsonl) as the job "
                   "runs, flushed per batch; progress on stderr")
    g.add_argument("--resume", action="store_true", help="continue a job: skip files already in --output")
    g.add_argument("--workers", type=int, default=0, help="processes decoding audio (default: 0, in-process)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default) or ray: Ray Data with model actors (pip install 'serkit[ray]')")
    g.add_argument("--actors", type=int, default=2, help="--engine ray: model actors (default: %(default)s)")
    g.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="--engine ray: a cluster to join (auto, ray://HOST:10001); default: a local Ray")
    g = p.add_argument_group("long recordings (--timeline; --output FILE.json|.csv)")
    g.add_argument("--timeline", action="store_true",
                   help="emotions over time: speech segments, each with an emotion and probabilities")
    g.add_argument("--vad", choices=VADS, default="auto",
                   help="speech detector: silero (needs serkit[timeline]), energy (level above the noise "
                        "floor), none (fixed segments); auto: silero when installed, else energy")
    g.add_argument("--max-segment", type=float, default=10.0, metavar="SECONDS",
                   help="split longer speech segments into equal parts (default: %(default)s)")
    g.add_argument("--segment-seconds", type=float, default=None, metavar="SECONDS",
                   help="segment length with --vad none (default: the model's window)")
    g.add_argument("--plot", metavar="PNG", help="plot emotion probabilities over time to PNG "
                   "(a folder when there are several files)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a bundle to ONNX (fp32, optionally int8)")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (waveforms in, logits out)")
    p.add_argument("--int8", action="store_true", help="also write a dynamically quantised int8 model")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="torch.onnx exporter: dynamo (default, ~30 s) or the legacy torchscript (~1 s)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18 dynamo, 17 torchscript)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="print a bundle's model card")
    p.add_argument("bundle", nargs="?", default=None, help="bundle folder (default: the shipped model)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("serve", help="serve the web page and JSON API (waitress)")
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
    p.add_argument("--vad", choices=VADS, default="auto",
                   help="voice-activity detector of the long-clip timeline when a request names none "
                        "(default: %(default)s = silero when installed, else energy; none = fixed windows)")
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

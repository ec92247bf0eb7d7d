"""``serkit prepare``, ``train`` and ``evaluate``: from corpus folders to a bundle and its report.

``train``'s options are generated from :class:`serkit.config.TrainConfig`; only the run's own
(the manifest, ``--out``, ``--resume``, ``--force``) and the pretrained-encoder shortcuts are
written here.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

from serkit.cli import common
from serkit.cli.common import add_force_option, add_model_option, not_a_folder
from serkit.config import TrainConfig
from serkit.models.configs import PretrainedConfig
from serkit.settings import add_dataclass_arguments, argument_group, dataclass_from_args, given_values


def cmd_prepare(args: argparse.Namespace) -> int:
    from serkit.prepare import prepare, print_summary

    not_a_folder(args.output, "--output")
    result = prepare(args.roots, args.output, corpus=args.corpus, emotions=args.emotions, force=args.force)
    print_summary(result, common.console, verbose=args.verbose)
    if not result.utterances:
        common.err_console.print("error: no labelled clips found; check the folder or pass --corpus"
                                 + f"; nothing written to {args.output}",
                                 highlight=False, markup=False, soft_wrap=True)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from serkit.training import train

    cfg = dataclass_from_args(TrainConfig, args,
                              model_options={**(args.model_options or {}), **pretrained_options(args)})
    if args.resume:
        cfg = resumable(cfg, args)
    try:
        report = train(args.manifest, args.out, cfg, resume=args.resume, force=args.force)
    except KeyboardInterrupt:
        import shlex
        common.err_console.print(f"interrupted: the epochs done so far are kept; continue with serkit train "
                                 f"{shlex.quote(args.manifest)} --out {shlex.quote(args.out)} --resume",
                                 highlight=False, markup=False, soft_wrap=True)
        return 130
    print_run(report, args.out)
    return 0


def resumable(cfg: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """--resume: ``cfg`` with every setting left at its default taken from the run (an option not
    given cannot be told from one given at its default), so that train() refuses only the options
    given that differ from the run's (:func:`serkit.run_folder.resumed_config`); this machine's
    settings (:data:`RUN_ONLY`: devices, workers, cache, progress) stay as given. --force beside
    it is refused."""
    import json
    from dataclasses import fields, replace
    from pathlib import Path

    from serkit.config import RUN_ONLY

    if args.force:
        raise ValueError("--resume continues a run and --force starts it over: give one of them")
    saved_file = Path(args.out) / "config.json"
    if not saved_file.is_file():
        return cfg                                     # train() says what is missing
    saved, default = TrainConfig.from_dict(json.loads(saved_file.read_text())), TrainConfig()
    return replace(cfg, **{f.name: getattr(saved, f.name) for f in fields(TrainConfig)     # this machine's own
                           if f.name not in RUN_ONLY and getattr(cfg, f.name) == getattr(default, f.name)})


def cmd_ensemble(args: argparse.Namespace) -> int:
    from serkit.ensembles import ensemble_runs

    print_run(ensemble_runs(args.runs, args.out, force=args.force), args.out)
    return 0


def print_run(report: dict, out: str) -> None:
    """A run's test figures (per corpus too) and where its bundle and report are."""
    from serkit.evaluation import left_out_lines

    console = common.console
    if report:
        console.print(f"test: accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
                      f"UAR {report['uar']:.3f}  ({report['n']} clips)")
        for corpus, m in report["per_corpus"].items():
            console.print(f"  {corpus}: accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}  ({m['n']} clips)")
        for line in filter(None, left_out_lines(report)):
            console.print(line, highlight=False, markup=False)
    console.print(f"bundle: {out}/bundle   report: {out}/eval/report.md", highlight=False, markup=False)


#: PretrainedConfig fields that `serkit train` offers as options of their own.
PRETRAINED_SHORTCUTS = ("backbone", "freeze", "pooling", "layer_weights", "encoder_lr")


def pretrained_options(args: argparse.Namespace) -> dict:
    """The PretrainedConfig shortcuts given (--backbone, --freeze, ...) as model options."""
    given = given_values(PretrainedConfig, args, PRETRAINED_SHORTCUTS)
    if given and args.model != "pretrained":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} only apply to pretrained encoders; add --model pretrained")
    return given


def cmd_evaluate(args: argparse.Namespace) -> int:
    from serkit.evaluate_cmd import evaluate_bundle
    from serkit.evaluation import left_out_lines, uncertain_lines
    from serkit.inference import load_model, resolve_model

    if len(args.paths) > 2:
        raise ValueError("evaluate takes [BUNDLE] MANIFEST")
    if len(args.paths) == 2 and args.model:
        raise ValueError(f"evaluate takes the model once: --model {args.model} or {args.paths[0]}, not both")
    bundle, manifest = (args.paths if len(args.paths) == 2 else (args.model, args.paths[0]))
    folder = resolve_model(bundle)
    predictor = load_model(bundle)
    r = evaluate_bundle(predictor, manifest, args.split, args.out, force=args.force, same_speaker=args.same_speaker,
                        card=folder if args.card else None)
    console = common.console
    console.print(f"{predictor.name} on {r['split']} ({r['n']} clips): accuracy {r['accuracy']:.3f}  "
                  f"macro-F1 {r['macro_f1']:.3f}  UAR {r['uar']:.3f}  ECE {r['calibration']['ece_after']:.3f}",
                  highlight=False, markup=False)
    for corpus, m in r["per_corpus"].items():
        console.print(f"  {corpus}: accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}  ({m['n']} clips)", markup=False)
    for line in filter(None, uncertain_lines(r["calibration"]) + left_out_lines(r)):
        console.print(line, highlight=False, markup=False)
    if args.out:
        console.print(f"report: {args.out}/report.md", highlight=False, markup=False)
    if args.card:
        console.print(f"card: these test figures are now {folder}'s (serkit info shows them)",
                      highlight=False, markup=False)
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register prepare, train and evaluate (``add`` makes a subcommand's parser)."""
    from serkit.corpora import READERS

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

    p = add("train", help="train a model on a manifest into a run folder",
            description="Every setting below but the run's own (MANIFEST, --out, --resume, --force) is a field "
                        "of serkit.config.TrainConfig, stored in the run folder and the bundle.")
    p.add_argument("manifest", help="manifest CSV from serkit prepare")
    p.add_argument("--out", "-o", required=True, help="run folder (bundle, reports, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    add_force_option(p, "start over in an --out that holds a run (its files are removed first), or train "
                        "into a folder holding other files")
    add_dataclass_arguments(p, TrainConfig)
    shortcuts = "pretrained encoders (--model pretrained; shortcuts for --model-options)"
    add_dataclass_arguments(p, PretrainedConfig, only=PRETRAINED_SHORTCUTS, unset=True, group=shortcuts)
    argument_group(p, shortcuts).add_argument("--last-layer", dest="layer_weights", action="store_const",
                                              const=False, help="the same as --no-layer-weights")
    p.set_defaults(func=cmd_train)

    p = add("ensemble", help="join runs of one split (trained with different --seed) into one model",
            description="The members answer together with the mean of their calibrated probabilities; the "
                        "ensemble's temperature is fitted on their shared validation speakers and it is scored "
                        "on their test speakers as serkit train scores a run. CNN-LSTM runs of one split only "
                        "(serkit train --seed S --split-seed N). Export it as any bundle: serkit export "
                        "OUT/bundle --onnx.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders of serkit train (2 to 8)")
    p.add_argument("--out", "-o", required=True, help="run folder for the ensemble (bundle, reports)")
    add_force_option(p, "replace an ensemble or run in --out (its files are removed first), or write into "
                        "a folder holding other files")
    p.set_defaults(func=cmd_ensemble)

    p = add("evaluate", help="evaluate a bundle on a manifest split (metrics, plots, reports)",
            usage="%(prog)s [-h] [--model BUNDLE] [--split SPLIT] [--out DIR] [--same-speaker] [--card] [--force] "
                  "[BUNDLE] MANIFEST")
    p.add_argument("paths", nargs="+", metavar="[BUNDLE] MANIFEST",
                   help="a bundle folder (optional; default model otherwise) and a manifest")
    add_model_option(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"], metavar="SPLIT",
                   help="part of the manifest's split to score: train, val, test or all")
    p.add_argument("--out", "-o", metavar="DIR", help="folder for report.json, report.md and plots")
    p.add_argument("--same-speaker", action="store_true", help="answer each speaker's clips (the manifest's "
                   "Dataset and Speaker) as one voice, as predict --same-speaker --speakers manifest does")
    p.add_argument("--card", action="store_true", help="write these test figures into the bundle's card "
                   "(its config.json), replacing those of its training: for a bundle scored otherwise than "
                   "it was trained (an ONNX int8 export, a changed scorer); --split test only")
    add_force_option(p, "write the report into an --out folder holding other files")
    p.set_defaults(func=cmd_evaluate)


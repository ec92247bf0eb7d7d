"""The ``serkit`` command: thin subcommands over the Python API.

Library errors (ValueError and its kin, FileNotFoundError) become one readable line on stderr
and exit status 2; nothing in the library calls ``sys.exit``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from serkit import __version__

console = Console()
err_console = Console(stderr=True)


def cmd_prepare(args: argparse.Namespace) -> int:
    from serkit.prepare import prepare, print_summary

    result = prepare(args.roots, args.output, corpus=args.corpus, emotions=args.emotions)
    print_summary(result, console, verbose=args.verbose)
    if not result.utterances:
        err_console.print("error: no labelled clips found; check the folder or pass --corpus")
        return 1
    return 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130

"""The ``serkit`` command: thin subcommands over the Python API.

The subcommands live in :mod:`serkit.cli.train` (prepare, train, evaluate),
:mod:`serkit.cli.predict` and :mod:`serkit.cli.bundles` (export, info, serve); their settings
are the dataclasses of :mod:`serkit.config`, from which the options are generated.

Library errors (ValueError and its kin, FileNotFoundError) become one readable line on stderr
and exit status 2; nothing in the library calls ``sys.exit``.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings
from collections.abc import Sequence

from serkit.cli import bundles, common, predict, train
from serkit.cli.common import HelpFormatter, Parser
from serkit.version import __version__

EXAMPLES = """examples:
  serkit predict my.wav                       the emotion of one clip, with the shipped model
  serkit predict recordings/ -f csv > out.csv every audio file in a folder, as CSV
  serkit predict --timeline call.wav --plot call.png
                                              emotions over time in a long recording
  serkit predict recordings/ -o preds.jsonl   a resumable batch job (rows written as it goes)
  serkit predict --same-speaker --speakers folder speakers/
                                              each folder one voice: answers adapted to it
  serkit predict --same-speaker --speakers voice clips/
                                              clips of unknown voices: grouped by voice, then adapted
  serkit serve                                the web page and JSON API on http://127.0.0.1:5000/
  serkit info                                 the model card: data, held-out speakers, metrics

'serkit COMMAND --help' shows a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="serkit", description="Speech emotion recognition toolkit.",
                                     epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"serkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, formatter_class=HelpFormatter)
    train.add_parsers(add)
    predict.add_parser(add)
    bundles.add_parsers(add)
    return parser


def note_cut_short(show):
    """``warnings.showwarning`` that prints serkit's :class:`~serkit.audio.CutShortAudio` as a
    ``note:`` line on stderr (each file once), and any other warning as ``show`` does."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        from serkit.audio import CutShortAudio      # (imported when a warning comes, not at start-up)

        if issubclass(category, CutShortAudio):
            common.err_console.print(f"note: {message}", highlight=False, markup=False, soft_wrap=True)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):   # a file name that is not UTF-8 prints as escapes, never fails
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = note_cut_short(warnings.showwarning)
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
        common.err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        common.err_console.print("interrupted")
        return 130

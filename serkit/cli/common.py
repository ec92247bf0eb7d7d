"""What every ``serkit`` subcommand shares: the consoles, the help format, and a few options."""
from __future__ import annotations

import argparse
import os
import typing

from rich.console import Console

#: Tables and results (stdout); tests replace it to set the width.
console = Console()
#: Errors, summaries and progress lines (stderr).
err_console = Console(stderr=True)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line, as a library error is
    (``error: argument --lr: ... (see serkit train --help)``), rather than the whole usage of a
    command with dozens of options; exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (argparse's ArgumentDefaultsHelpFormatter, but
    not for flags, options without a default, or help that already names it); an on/off option
    (``--x``/``--no-x``) says which it is by default; epilogs keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower():
            return text
        if isinstance(action, argparse.BooleanOptionalAction):
            return text + f" (default: {'on' if action.default else 'off'})"
        if (not action.option_strings or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or action.nargs == 0):
            return text
        return text + " (default: %(default)s)"


def add_force_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> None:
    p.add_argument("--force", action="store_true",
                   help=f"write even where serkit did not write before: {what} (nothing else is touched; "
                        "an output that is an input is always refused)")


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", metavar="BUNDLE", default=None,
                   help="a bundle folder, an ONNX export (folder or .onnx file), or a shipped model: "
                        "default, fast (default: default)")


def not_a_folder(path: str | None, flag: str) -> None:
    """An output file that names an existing folder is refused before any work is done."""
    if path and os.path.isdir(path):
        raise IsADirectoryError(f"{flag} {path} is a folder; name a file")

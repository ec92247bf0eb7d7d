"""Command-line options generated from settings dataclasses, as transformers' ``HfArgumentParser``
does (without importing transformers: the CLI stays light and starts fast).

A settings class (:mod:`serkit.config` holds them all) declares each field once, with
:func:`setting`: its type, default and help text, and optionally its choices, bounds
(:class:`~serkit.bundle_schema.Rule`), parser and flag names. From that:

- :func:`add_dataclass_arguments` adds one option per field to an argparse parser: ``--field-name``
  typed as the field; a ``bool`` gets ``--x`` and ``--no-x`` (whatever its default, so that
  flipping a default breaks no one's command line); a ``list`` takes a comma list (or repeats, with ``repeat``); a
  ``dict`` takes JSON; choices and bounds are checked by argparse, so a bad value is a one-line
  usage error (exit status 2) before anything runs;
- :func:`dataclass_from_args` builds the dataclass from the parsed namespace;
- :func:`check_settings`, called by each class's ``__post_init__``, checks the same choices,
  types and bounds for settings built in Python, raising ValueError naming field and value.
"""
from __future__ import annotations

import argparse
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, Field, field, fields
from typing import Any, TypeVar

from serkit.bundle_schema import Rule, SchemaError, check_value

T = TypeVar("T")


def setting(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING,
            choices: Sequence[str] | None = None, rule: Rule | None = None,
            parse: Callable[[str], Any] | None = None, flags: Sequence[str] = (), metavar: str | None = None,
            group: str | None = None, repeat: bool = False) -> Any:
    """A dataclass field that is also a command-line option.

    ``choices``: the allowed values; ``rule``: bounds of a number (or a list's numbers);
    ``parse``: turns the option's text into the value (its ValueError is the usage error);
    ``flags``: the option's names instead of ``--field-name``; ``group``: the title of the
    help section it is listed under; ``repeat``: a list given as repeated options, not a comma list.
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None, "rule": rule, "parse": parse,
            "flags": tuple(flags), "metavar": metavar, "group": group, "repeat": repeat}
    return field(default=default, default_factory=default_factory, metadata=meta)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


def _default(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def flag_of(f: Field) -> str:
    """The option's main name: ``--field-name`` unless the field names its own flags."""
    return f.metadata.get("flags", ())[0] if f.metadata.get("flags") else "--" + f.name.replace("_", "-")


def check_settings(obj: Any) -> None:
    """Every field of the dataclass ``obj`` has its type, one of its choices and keeps within its
    rule; else ValueError, e.g. ``TrainConfig.lr: -1 is out of range (give a value >= 0 and <= 10)``."""
    cls = type(obj)
    for f in fields(obj):
        value = getattr(obj, f.name)
        choices = f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise ValueError(f"unknown {f.name} {value!r} ({flag_of(f)}); choose one of: {', '.join(choices)}")
        try:
            check_value(f"{cls.__name__}.{f.name}", value, _hints(cls)[f.name], f.metadata.get("rule"))
        except SchemaError as exc:
            raise ValueError(f"{exc} ({flag_of(f)})") from None


def _converter(f: Field, kind: Any, hint: Any) -> Callable[[str], Any]:
    """The argparse ``type`` of a field: parse the text, then check it as :func:`check_settings` does."""
    parse = f.metadata.get("parse")
    rule = f.metadata.get("rule")
    item = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None

    def convert(text: str) -> Any:
        try:
            if parse is not None:
                value = parse(text)
            elif kind is int or item is int:
                value = [int(x) for x in text.split(",")] if item else int(text)
            elif kind is float or item is float:
                value = [float(x) for x in text.split(",")] if item else float(text)
            elif item is not None and not f.metadata.get("repeat"):
                value = [x.strip() for x in text.split(",") if x.strip()]
            elif typing.get_origin(kind) is dict or kind is dict:
                value = json.loads(text)
                if not isinstance(value, dict):
                    raise ValueError(f"{text!r} is not a JSON object")
            else:
                value = text
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc.msg} at character {exc.pos})") from None
        except ValueError as exc:
            name = {int: "an integer", float: "a number"}.get(item or kind)
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}" if name and parse is None else str(exc)) from None
        if value is not None:
            try:
                check_value("", value, item if f.metadata.get("repeat") else hint, rule)
            except SchemaError as exc:
                raise argparse.ArgumentTypeError(exc.problem) from None
        return value

    return convert


def argument_group(parser: argparse.ArgumentParser, title: str | None) -> Any:
    """The parser's help section called ``title`` (made when first asked for); the parser itself for None."""
    if title is None:
        return parser
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None,
                            exclude: Iterable[str] = (), unset: bool = False, group: str | None = None) -> None:
    """Add an option for each field of the settings dataclass ``cls`` (or the fields in ``only``,
    in their order; less those in ``exclude``). With ``unset`` an option not given is None (its
    help names the dataclass's default): for shortcuts that override only what the user gives
    (see :func:`given_values`). ``group``: the help section of every option, instead of each
    field's own."""
    by_name = {f.name: f for f in fields(cls)}
    names = list(only) if only is not None else list(by_name)
    for name in names:
        if name in exclude:
            continue
        f = by_name[name]
        kind, optional = _plain(_hints(cls)[name])
        default = _default(f)
        meta = f.metadata
        flags = list(meta.get("flags") or ["--" + name.replace("_", "-")])
        options: dict[str, Any] = {"dest": name, "help": meta.get("help") or None}
        if unset:
            shown = "on" if default is True else "off" if default is False else default
            if default is not None and "default" not in (options["help"] or ""):
                options["help"] = f"{options['help'] or ''} (default: {shown})".strip()
            default = None
        if kind is bool:     # both forms, whatever the default, so a flipped default breaks no script
            options["default"] = default
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = _converter(f, kind, _hints(cls)[name])
            # an empty list or dict shows as no default (the dataclass's own applies)
            options["default"] = None if default in ([], {}) else default
            if meta.get("repeat"):
                options["action"] = "append"
            if meta.get("choices"):
                options["choices"] = meta["choices"]
            if meta.get("metavar"):
                options["metavar"] = meta["metavar"]
            elif typing.get_origin(kind) is list and not meta.get("repeat"):
                options["metavar"] = "A,B,..."
            elif typing.get_origin(kind) is dict or kind is dict:
                options["metavar"] = "JSON"
        argument_group(parser, group or meta.get("group")).add_argument(*flags, **options)


def given_values(cls: type, namespace: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The fields ``names`` of ``cls`` that were given on the command line (options added with
    ``unset=True``: None when not given)."""
    known = {f.name for f in fields(cls)}
    return {n: getattr(namespace, n) for n in names if n in known and getattr(namespace, n, None) is not None}


def dataclass_from_args(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """The settings ``cls`` from parsed options: each field present in ``namespace`` (an option
    left at an empty default takes the dataclass's), then ``overrides``."""
    values = {}
    for f in fields(cls):
        if f.init and hasattr(namespace, f.name):
            value = getattr(namespace, f.name)
            if value is None and not _plain(_hints(cls)[f.name])[1]:
                continue
            values[f.name] = value
    values.update(overrides)
    return cls(**values)

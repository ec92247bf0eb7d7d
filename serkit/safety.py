"""What serkit writes, where, and what it refuses to answer: the rules, defined once.

Files (README "What serkit writes"):

- serkit writes into a folder it created, one that carries its mark, or an empty one. Its mark is
  a ``.serkit.json`` file naming the kind of folder (``run``, ``eval``), or for bundles and ONNX
  exports their own ``config.json`` (``"format": "serkit-bundle"``). A folder holding anything
  else needs ``--force``, and even then serkit writes only its own file names there and leaves
  every other file alone.
- An existing file is replaced only when serkit wrote it (recognised by its content) or with
  ``--force``; ``--resume`` appends to a file only after checking that serkit wrote it.
- An output that is one of the inputs (the same file once links are resolved), a folder that holds
  an input, and the current folder or one above it are refused, whatever the flags.
- Files are written to a temporary file beside the target and renamed into place; folders
  (bundles, exports) are filled beside the target and swapped in (:func:`atomic_folder`).

Numbers: :func:`to_json` writes JSON with ``allow_nan=False`` (never an invalid ``NaN``), naming
where a non-finite number is. (Non-finite model output is refused by :mod:`serkit.scorer`.)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from serkit.version import __version__

MARKER = ".serkit.json"
CONFIG = "config.json"
BUNDLE_FORMAT = "serkit-bundle"   # config.json "format" of bundles and ONNX exports


class OutputError(ValueError):
    """An output serkit refuses to write; the message names the path and the way out."""


# ------------------------------------------------------------------------------ ownership

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def folder_kind(folder: str | os.PathLike) -> str | None:
    """The kind of serkit folder ``folder`` is (``run``, ``eval``, ``bundle``, ``export``), or None
    for a folder serkit did not write. Folders written before the marker existed are recognised
    by their ``config.json``: a bundle's or export's format, or a run's training settings beside
    its ``split.csv``."""
    folder = Path(folder)
    marker = _read_json(folder / MARKER)
    if isinstance(marker, dict) and marker.get("written_by") == "serkit" and isinstance(marker.get("kind"), str):
        return marker["kind"]
    config = _read_json(folder / CONFIG)
    if isinstance(config, dict):
        if config.get("format") == BUNDLE_FORMAT:
            return "export" if "onnx" in config else "bundle"
        if {"split", "epochs", "seed"} <= set(config) and (folder / "split.csv").is_file():
            return "run"
    return None


def mark_folder(folder: str | os.PathLike, kind: str) -> None:
    """Leave serkit's mark (``.serkit.json``) in ``folder``: serkit may write there again."""
    atomic_write_text(Path(folder) / MARKER, to_json({"written_by": "serkit", "kind": kind,
                                                      "serkit_version": __version__}, indent=2) + "\n")


def _same_or_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse_inputs(real: Path, inputs: Iterable[str | os.PathLike], flag: str, shown: str) -> None:
    for item in inputs:
        if _same_or_inside(Path(item).resolve(), real):
            what = "is" if Path(item).resolve() == real else "holds"
            raise OutputError(f"{flag} {shown} {what} the input {item}; write to another place")


def check_output_folder(folder: str | os.PathLike, kind: str, *, force: bool = False,
                        inputs: Iterable[str | os.PathLike] = (), flag: str = "-o") -> Path:
    """Check, before any work, that serkit may write a ``kind`` folder at ``folder``; returns it.

    Allowed: a new folder, an empty one, one serkit wrote as ``kind``, and with ``force`` one
    holding other files (only serkit's file names are then written there). Refused, whatever
    ``force`` says: the current folder or one above it, a folder that is or holds an input, a
    file, and a serkit folder of another kind.
    """
    shown = str(folder)
    path = Path(folder)
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if path.name in ("", ".", "..") or _same_or_inside(cwd, real):
        raise OutputError(f"{flag} {shown} is the current folder or one above it; name a folder for "
                          f"serkit to create, e.g. {flag} {kind}s/new")
    _refuse_inputs(real, inputs, flag, shown)
    if not path.exists():
        return path
    if not path.is_dir():
        raise OutputError(f"{flag} {shown} is a file, not a folder; name a folder")
    found = folder_kind(path)
    if found == kind:
        return path
    if found is not None:
        raise OutputError(f"{flag} {shown} is a serkit {found} folder, not {with_article(kind)} folder; choose another folder")
    others = sorted(p.name for p in path.iterdir())
    if others and not force:
        listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise OutputError(f"{flag} {shown} holds files serkit did not write ({listed}); choose a new folder, "
                          "or pass --force to write serkit's files into it (other files are left alone)")
    return path


def claim_output_folder(folder: str | os.PathLike, kind: str, *, force: bool = False,
                        inputs: Iterable[str | os.PathLike] = (), flag: str = "-o") -> Path:
    """:func:`check_output_folder`, then create the folder and leave serkit's mark in it."""
    path = check_output_folder(folder, kind, force=force, inputs=inputs, flag=flag)
    path.mkdir(parents=True, exist_ok=True)
    mark_folder(path, kind)
    return path


def remove_owned(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Delete the files ``names`` (relative paths, serkit's own) under ``folder``, and the
    sub-folders that leaves empty; nothing else is touched."""
    folder = Path(folder)
    parents = set()
    for name in names:
        target = folder / name
        if target.is_file() or target.is_symlink():
            target.unlink()
        parents.update(p for p in (folder / name).parents if folder in p.parents)
    for sub in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()


def first_line(path: str | os.PathLike, limit: int = 65536) -> str:
    """The first line of a text file (without its newline), or '' when unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return ""


def check_output_file(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                      force: bool = False, resume: bool = False,
                      ours: Callable[[Path], bool] | None = None, flag: str = "-o",
                      hint: str = "choose another file, or pass --force to replace it") -> Path:
    """Check, before any work, that serkit may write the file ``path``; returns it.

    Refused whatever the flags: a folder, and a file that is one of ``inputs``. An existing,
    non-empty file is allowed only with ``resume`` (the caller then checks it is serkit's
    output before touching it), when ``ours(path)`` recognises it as serkit's, or with ``force``.
    """
    shown = str(path)
    path = Path(path)
    if path.name in ("", ".", "..") or path.is_dir():
        raise OutputError(f"{flag} {shown} is a folder; name a file")
    real = path.resolve()
    for item in inputs:
        if Path(item).resolve() == real:
            raise OutputError(f"{flag} {shown} is also an input; write to another file")
    if path.is_file() and path.stat().st_size > 0 and not (resume or force or (ours is not None and ours(path))):
        raise OutputError(f"{flag} {shown} exists" + ("" if ours is None else " and serkit did not write it")
                          + f"; {hint}")
    if not (resume and path.is_file()):      # a job resumed appends to its file: the folder may be closed
        check_writable(path, f"{flag} {shown}")
    return path


def with_article(word: str) -> str:
    """``word`` with its indefinite article: "an eval", "a run"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def check_writable(path: Path, what: str) -> None:
    """Before any work, that a file can be created beside ``path`` (in the nearest folder of it
    that exists: the others are created on writing), by creating and removing an empty one there;
    so a read-only place (or one this user may not write) fails now, naming the option, not after
    hours of scoring. (A full disk usually still lets an empty file be made, and fails later.)"""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".serkit-check.", dir=folder)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write in {folder} ({exc.strerror or exc}); choose another place") from None
    os.close(fd)
    os.unlink(probe)


# --------------------------------------------------------------------------- atomic writes

@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_args: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` to write; when the block succeeds it replaces
    ``path`` (a rename), when it fails it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, **dump_args: Any) -> Path:
    """``data`` as indented JSON at ``path``, atomically; a NaN or infinity is an error."""
    try:
        text = to_json(data, indent=2, **dump_args)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return atomic_write_text(path, text + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _non_finite(data: Any, where: str = "") -> str | None:
    if isinstance(data, float) and not math.isfinite(data):
        return where or "the top level"
    if isinstance(data, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    return next((found for key, value in items if (found := _non_finite(value, key))), None)


def to_json(data: Any, **dump_args: Any) -> str:
    """``json.dumps`` that refuses NaN and infinity (they are not JSON), naming where one is."""
    try:
        return json.dumps(data, allow_nan=False, **dump_args)
    except ValueError:
        where = _non_finite(data)
        if where is None:
            raise
        raise ValueError(f"refusing to write a non-finite number (NaN or infinity) as JSON, at {where}") from None


@contextmanager
def atomic_folder(folder: str | os.PathLike, kind: str, owned: Iterable[str], *, force: bool = False,
                  inputs: Iterable[str | os.PathLike] = (), flag: str = "-o") -> Iterator[Path]:
    """Yield a temporary folder beside ``folder`` to fill with the files ``owned`` (serkit's
    names for a ``kind`` folder); when the block succeeds they replace ``folder``'s, when it fails
    the temporary folder is removed and ``folder`` is untouched.

    ``folder`` is checked first (:func:`check_output_folder`, before the block's work). When it
    holds only serkit's files it is swapped whole (a rename); when it also holds other files
    (allowed with ``force``), serkit's files move in one by one, ``config.json`` (what makes the
    folder loadable) removed first and written last, and the other files stay.
    """
    folder = check_output_folder(folder, kind, force=force, inputs=inputs, flag=flag)
    owned = set(owned) | {MARKER}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())     # mkdtemp's 0700 would hide the folder from other users
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~_umask())
        _commit(tmp, folder, owned)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit(tmp: Path, folder: Path, owned: set[str]) -> None:
    if not folder.exists():
        os.replace(tmp, folder)
        return
    if all(p.name in owned for p in folder.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
        os.replace(folder, old)          # renames onto the empty temporary folder
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        return
    (folder / CONFIG).unlink(missing_ok=True)
    for name in owned - {p.name for p in tmp.iterdir()}:
        if (folder / name).is_file():    # serkit's file from the previous write, not written now
            (folder / name).unlink()
    for f in sorted(tmp.iterdir(), key=lambda p: p.name == CONFIG):
        os.replace(f, folder / f.name)
    tmp.rmdir()

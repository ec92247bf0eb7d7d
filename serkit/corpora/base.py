"""What every corpus reader shares: the parsed-name record, the generic scan and the header read.

A corpus module declares its naming scheme (a label table and a ``parse(path)`` function);
:func:`scan_with` walks a folder, parses every name once, reads every audio header, and counts
each file it does not keep in a :class:`~serkit.manifest.SkipReport` under a named reason.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from serkit.audio import MIN_SECONDS, SAMPLE_RATE
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

#: File endings that are tried as audio; anything else in a corpus folder is a counted stray.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})

# Skip reasons, spelled once.
NOT_AUDIO = "not audio"
UNPARSED = "name does not parse"
UNKNOWN_LABEL = "unknown label"
NOT_SELECTED = "emotion not selected"
UNREADABLE = "unreadable audio"
EMPTY = "empty audio"
TOO_SHORT = f"shorter than {MIN_SECONDS} s (too short to hold speech)"
DUPLICATE = "same clip in another format"
REPEATED = "repeated (the same file again)"
CONFLICTING = "conflicting duplicates (one file, different labels)"

#: Which of two copies of one clip (``x.wav`` and ``x.ogg``) is kept: the first in this order.
_FORMAT_PREFERENCE = (".wav", ".flac", ".aiff", ".aif", ".ogg", ".oga", ".opus", ".mp3")
NOT_UTF8 = "name is not UTF-8 (rename it)"


@dataclass(frozen=True)
class Parsed:
    """What a file name (and its folders) says about a clip."""

    speaker: str
    label: str  # the corpus's own emotion code, a key of the module's LABELS table
    gender: str = "unknown"
    sentence: str = ""  # the corpus's id of the words spoken (same id, same text), if it has one


class SkipFile(Exception):
    """Raised by a ``parse`` function for a well-named file the corpus itself excludes."""


def audio_files(root: Path) -> list[Path]:
    """Every file under ``root`` (sorted), audio or not: strays are counted, not ignored.

    Linked folders are followed; a folder reached a second time (a link back up the tree, or a
    second link to one folder) is not read again, so each file is listed once.
    """
    out = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        out.extend(Path(dirpath) / f for f in sorted(filenames))
    return out


def is_utf8_name(path: Path) -> bool:
    """False for a path whose bytes are not UTF-8 (Python holds them as surrogate escapes): such a
    name cannot be written to a UTF-8 manifest, so the file is counted as skipped, not kept."""
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def one_per_stem(name: str, files: Iterable[Path], report: SkipReport) -> list[Path]:
    """``files`` with one audio file per folder and name stem: where a clip is there twice in
    different formats (``x.wav`` beside ``x.ogg``), the lossless copy is kept and the other counted
    as :data:`DUPLICATE`. Non-audio files pass through (the scan counts them)."""
    files = list(files)
    rank = {ext: i for i, ext in enumerate(_FORMAT_PREFERENCE)}
    best: dict[Path, Path] = {}
    for f in files:
        if is_audio_name(f):
            held = best.get(f.with_suffix(""))
            if held is None or rank.get(f.suffix.lower(), 99) < rank.get(held.suffix.lower(), 99):
                best[f.with_suffix("")] = f
    out = []
    for f in files:
        if is_audio_name(f) and best[f.with_suffix("")] != f:
            report.add(name, DUPLICATE, f)
        else:
            out.append(f)
    return out


def majority(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """key -> its most frequent value over ``pairs`` (``unknown`` on a tie): a speaker's gender
    when a corpus states it per file and a few files disagree."""
    seen: dict[str, Counter[str]] = {}
    for key, value in pairs:
        seen.setdefault(key, Counter())[value] += 1
    out = {}
    for key, counts in seen.items():
        (top, n), *rest = counts.most_common()
        out[key] = "unknown" if rest and rest[0][1] == n else top
    return out


def read_header(path: Path) -> tuple[float, int]:
    """(duration in seconds, sample rate) from the file header; raises RuntimeError/sf errors."""
    if path.stat().st_size == 0:
        return 0.0, 0  # a 0-byte file is empty audio, not a decoding failure
    info = sf.info(str(path))
    return info.frames / info.samplerate, int(info.samplerate)


def scan_with(
    name: str,
    labels: dict[str, str],
    parse: Callable[[Path], Parsed | None],
    files: Iterable[Path],
    emotions: Iterable[str] = ALL_EMOTIONS,
    report: SkipReport | None = None,
    genders: dict[str, str] | None = None,
) -> list[Utterance]:
    """Turn ``files`` into utterances of corpus ``name``, counting every file not kept.

    ``labels`` maps the corpus's codes to canonical emotions; ``genders`` (speaker -> gender)
    overrides what ``parse`` says where a side table knows better. Where a clip is there in two
    formats in one folder, the lossless copy is kept (:func:`one_per_stem`).
    """
    report = report if report is not None else SkipReport()
    keep = set(emotions)
    out: list[Utterance] = []
    for path in one_per_stem(name, files, report):     # a clip there in two formats is one clip
        if not is_utf8_name(path):
            report.add(name, NOT_UTF8, path)
            continue
        if not is_audio_name(path):
            report.add(name, NOT_AUDIO, path)
            continue
        try:
            parsed = parse(path)
        except SkipFile as exc:
            report.add(name, str(exc), path)
            continue
        if parsed is None:
            report.add(name, UNPARSED, path)
            continue
        emotion = labels.get(parsed.label)
        if emotion is None:
            report.add(name, UNKNOWN_LABEL, path)
            continue
        if emotion not in keep:
            report.add(name, NOT_SELECTED, path)
            continue
        try:
            duration, rate = read_header(path)
        except (RuntimeError, sf.LibsndfileError, OSError, ValueError):
            report.add(name, UNREADABLE, path)
            continue
        if duration <= 0:
            report.add(name, EMPTY, path)
            continue
        if round(duration * SAMPLE_RATE) < MIN_SECONDS * SAMPLE_RATE:   # in the models' samples, as the scorer counts
            report.add(name, TOO_SHORT, path)
            continue
        gender = (genders or {}).get(parsed.speaker, parsed.gender)
        out.append(Utterance(
            corpus=name, speaker=parsed.speaker, emotion=emotion, path=path.resolve(),
            label=parsed.label, gender=gender, duration=duration, sample_rate=rate,
            sentence=parsed.sentence,
        ))
    return out

"""Corpus readers, registered in one explicit table, and the detection that finds them in a folder.

``find_corpora(root)`` looks at the file names under ``root``: when most audio files in a folder
follow one corpus's naming scheme, that folder is read as that corpus; otherwise each sub-folder
is looked at in turn. So the combined download of the original project (``Crema/``,
``Ravdess/audio_speech_actors_01-24/``, ``Savee/``, ``Tess/``) and ``shared/corpora``
(``ravdess/``, ``emodb/``, ``nemo/``, ``ased/``) are both recognised without flags. Folders named after emotions are
read by the generic folder reader; a ``.csv`` root by the CSV reader.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from serkit.corpora import ased, cremad, csvlist, emodb, folder, nemo, ravdess, savee, tess
from serkit.corpora.base import CONFLICTING, REPEATED, SkipFile, audio_files, is_audio_name
from serkit.emotions import ALL_EMOTIONS
from serkit.manifest import SkipReport, Utterance

#: Every reader by name: the names ``--corpus`` accepts.
READERS: dict[str, ModuleType] = {
    m.NAME: m for m in (ravdess, cremad, tess, savee, emodb, nemo, ased, folder, csvlist)
}

#: Readers whose naming schemes are specific enough to detect a corpus by.
NAMED = (ravdess, cremad, tess, savee, emodb, nemo, ased)

#: A folder is taken as a corpus when at least this share of its audio files parse.
DETECT_SHARE = 0.5

NO_CORPUS = "unrecognised"


def _parses(module: ModuleType, path: Path) -> bool:
    try:
        return module.parse(path) is not None
    except SkipFile:
        return True  # a well-formed name the corpus itself excludes (e.g. RAVDESS song)


def _best_reader(files: list[Path], readers: Iterable[ModuleType],
                 sole: bool = False) -> ModuleType | None:
    """The reader that parses most of ``files`` (at least DETECT_SHARE of the audio), if any.

    With ``sole``, a folder where a second reader also parses some files is a mix of corpora:
    no reader is returned, so the caller looks at the sub-folders one by one.
    """
    audio = [f for f in files if is_audio_name(f)]
    if not audio:
        return None
    scores = sorted(((sum(_parses(m, f) for f in audio), m) for m in readers),
                    key=lambda s: s[0], reverse=True)
    hits, best = scores[0]
    if sole and len(scores) > 1 and scores[1][0] > 0:
        return None
    return best if hits >= DETECT_SHARE * len(audio) else None


def find_corpora(root: str | Path, report: SkipReport | None = None) -> list[tuple[str, Path]]:
    """(reader name, folder) for every corpus found under ``root``.

    Files outside every recognised corpus are counted in ``report`` as ``unrecognised``.
    Raises FileNotFoundError when ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"corpus folder not found: {root}")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return [(csvlist.NAME, root)]
        raise ValueError(f"{root}: expected a folder of clips or a .csv list of clips")
    report = report if report is not None else SkipReport()
    found: list[tuple[str, Path]] = []

    def visit(folder_: Path, files: list[Path]) -> None:
        children: dict[Path, list[Path]] = {}
        loose: list[Path] = []
        for f in files:
            rel = f.relative_to(folder_)
            (children.setdefault(folder_ / rel.parts[0], []) if len(rel.parts) > 1 else loose).append(f)
        reader = _best_reader(files, NAMED, sole=bool(children))
        if reader is not None:
            found.append((reader.NAME, folder_))
            return
        # Emotion-named folders directly below: the generic reader takes this folder.
        if children and _best_reader(files, [folder]) is folder and all(
                folder.folder_label(c.name) in folder.LABELS or not any(is_audio_name(f) for f in fs)
                for c, fs in children.items()):
            found.append((folder.NAME, folder_))
            return
        for f in loose:
            report.add(NO_CORPUS, "not audio" if not is_audio_name(f) else "no corpus recognised", f)
        for child, fs in sorted(children.items()):
            visit(child, fs)

    visit(root, audio_files(root))
    return found


def scan(root: str | Path, corpus: str | None = None, emotions: Iterable[str] = ALL_EMOTIONS,
         report: SkipReport | None = None) -> list[Utterance]:
    """Utterances under ``root``: with ``corpus`` that reader alone, otherwise every corpus found."""
    report = report if report is not None else SkipReport()
    emotions = tuple(emotions)
    if corpus is not None:
        if corpus not in READERS:
            raise ValueError(f"unknown corpus {corpus!r}; choose one of: {', '.join(READERS)}")
        if not Path(root).exists():
            raise FileNotFoundError(f"corpus folder not found: {root}")
        return dedupe(READERS[corpus].scan(root, emotions=emotions, report=report), report)
    out: list[Utterance] = []
    for name, folder_ in find_corpora(root, report):
        out += READERS[name].scan(folder_, emotions=emotions, report=report)
    return dedupe(out, report)


def dedupe(utts: list[Utterance], report: SkipReport) -> list[Utterance]:
    """Each file once (by its resolved path), in order: a copy that says the same as the first is
    counted as repeated; copies that disagree (emotion, speaker, corpus…) are all left out and
    counted as conflicting, since no one can tell which label is right."""
    groups: dict[Path, list[Utterance]] = {}
    for u in utts:
        groups.setdefault(Path(u.path).resolve(), []).append(u)
    out = []
    for group in groups.values():
        first = group[0]
        same = all((u.corpus, u.speaker, u.emotion, u.label, u.gender, u.sentence) ==
                   (first.corpus, first.speaker, first.emotion, first.label, first.gender, first.sentence)
                   for u in group)
        if same:
            out.append(first)
        for u in (group[1:] if same else group):
            report.add(u.corpus, REPEATED if same else CONFLICTING, u.path)
    return out


def words_give_label(u: Utterance) -> bool:
    """Whether the words of clip ``u`` alone give its emotion away: its corpus's reader says so
    (a ``words_give_label(sentence)`` of its own; today ASED's emotion-specific sentences 03-07).
    Metrics leave such clips out (:func:`serkit.evaluation.evaluate_logits`): a model right on
    them may have learned the words, not the voice."""
    check = getattr(READERS.get(u.corpus), "words_give_label", None)
    return bool(check is not None and check(u.sentence))


def judged(utts: Iterable[Utterance]) -> list[bool]:
    """Which of ``utts`` a figure should judge (and a validation set choose by): those whose words
    do not give their emotion away (:func:`words_give_label`); all of them when that leaves none."""
    keep = [not words_give_label(u) for u in utts]
    return keep if any(keep) else [True] * len(keep)


def licence_note(corpora: Iterable[str]) -> str:
    """The terms a model trained on ``corpora`` inherits, from each corpus module's ``LICENCE``."""
    terms = [getattr(READERS.get(c), "LICENCE", None) or f"{c}: see the data's own licence" for c in corpora]
    return "Trained on data under these terms, which the weights inherit: " + "; ".join(terms) + "."

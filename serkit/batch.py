"""Batch jobs: score many files into a CSV or JSONL file that grows as the job runs.

    serkit predict FOLDER/ 'more/**/*.wav' manifest.csv --output results.csv --workers 2 [--resume]

- Files are decoded in DataLoader worker processes (``workers``) while the model scores the
  previous batch; the model sees ``batch_size`` files' windows per call.
- Each batch's rows are appended and flushed (and fsync'ed) before the next batch starts, so a
  job killed at any point keeps every row written before the kill.
- ``resume`` first checks that the output is serkit's, answered by the same model (its header,
  every row's ``model``: :func:`model_id`) without changing it, then drops a half-written last
  line, and skips every file that already has a row, so a resumed job ends with each file exactly
  once. A file recorded with an error counts as done: start over (``force``) to retry those.
- Paths are compared resolved (``../x.wav`` and ``/abs/x.wav`` are one file, scored once, found
  done however spelled; rows keep the first spelling). A file that cannot be decoded or scored
  gets a row with its error. An output is never replaced without ``force``, nor one that is an input.
- ``same_speaker`` (``--same-speaker``): each group of files that is one voice (all of them, each
  folder's or each speaker's of a manifest: ``--speakers``) is answered adapted to that voice, so
  a group's rows are written once its last file is scored; resuming scores an unfinished group
  again, whole, and writes only the rows it lacks.

Rows are those ``serkit predict --format csv`` prints (:func:`csv_columns`), or JSONL of
:meth:`Prediction.to_dict` with a ``model``, rounded as :mod:`serkit.display` says.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serkit.audio import MAX_SECONDS, Decoded, decode_item
from serkit.display import PROB_DECIMALS, SECONDS_DECIMALS, prediction_dict, progress_bar  # noqa: F401
from serkit.inference import Prediction, Predictor
from serkit.inputs import file_key, manifest_paths, speaker_groups  # noqa: F401  (re-exported)
from serkit.manifest import reading_csv
from serkit.safety import OutputError, check_output_file, to_json
from serkit.speaker import units_heard

OUTPUT_SUFFIXES = (".csv", ".jsonl")
# ------------------------------------------------------------------------------------- output

def csv_columns(labels: Sequence[str], voices: bool = False, model: bool = False) -> list[str]:
    """A CSV output's header; ``voices`` (``--speakers voice``): a ``voice`` after ``uncertain``; ``model``: a last ``model``."""
    return ["file", "emotion", "confidence", "uncertain", *(["voice"] if voices else []), *labels, "duration_s",
            "speech_s", "reason", "error", *(["model"] if model else [])]


def model_id(predictor: Predictor, same_speaker: bool = False, speakers: str = "one") -> str:
    """What answered a batch job's rows (its ``model`` column or field): the model's name, a
    fingerprint of what decides its answers (:func:`serkit.runtimes.fingerprint`) and the speaker
    adaptation, if any. ``--resume`` continues only a job answered so (:func:`answered_alike`)."""
    from serkit.runtimes import fingerprint

    return f"{predictor.name}@{fingerprint(predictor)[:10]}" + (f" same-speaker:{speakers}" if same_speaker else "")


def csv_row(r: Prediction, labels: Sequence[str], voices: bool = False, model: str | None = None) -> list[str]:
    """One CSV row in the number convention of :mod:`serkit.display` (4-decimal probabilities,
    durations in seconds to the millisecond)."""
    p, s = f".{PROB_DECIMALS}f", f".{SECONDS_DECIMALS}f"
    return [r.file, r.emotion or "", format(r.confidence, p) if r.confidence is not None else "",
            ("yes" if r.uncertain else "no") if r.emotion else "",
            *([str(r.voice) if r.voice is not None else ""] if voices else []),
            *[format(r.probabilities[l], p) if r.probabilities else "" for l in labels],
            format(r.duration_s, s) if r.duration_s is not None else "",
            format(r.speech_s, s) if r.speech_s is not None else "", r.reason or "", r.error or "",
            *([model] if model is not None else [])]


#: Keys of a JSONL row: every row serkit writes has the first four, and no others than these
#: (``voice`` only in rows of ``--speakers voice``, hence the Prediction with a voice).
ROW_KEYS = frozenset(Prediction(file="", voice=0).to_dict()) | {"model"}
REQUIRED_KEYS = {"file", "emotion", "probabilities", "error"}


def read_done(path: str | os.PathLike, labels: Sequence[str], voices: bool = False,
              model: str | None = None) -> set[str]:
    """Keys (:func:`file_key`) of the files that already have a row in the output at ``path``.

    The whole file is checked first and left unchanged when it is not this model's serkit output
    (ValueError: another model's labels, rows another ``model`` answered (:func:`model_id`), or
    not a serkit output at all); only then is a last line cut by a kill (no newline) dropped.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    text = complete.decode("utf-8", errors="surrogateescape")   # file names that are not UTF-8 round-trip
    files = (_csv_files(path, text, labels, voices, model) if path.suffix.lower() == ".csv"
             else _jsonl_files(path, text, labels, model))
    tail = data[len(complete):]
    if tail:   # a row cut by a kill: dropped, once it is sure to be the start of one of serkit's
        start = (b'{"file": ' if path.suffix.lower() == ".jsonl" else
                 b"" if complete else ",".join(csv_columns(labels, voices, model is not None)).encode() + b"\n")
        if not (tail.startswith(start) or start.startswith(tail)):
            raise OutputError(f"{path}: its last line is not the start of a row serkit wrote; "
                              "--resume left the file unchanged: write to a new file")
        with open(path, "rb+") as fh:
            fh.truncate(len(complete))
    return {file_key(f) for f in files}


def answered_alike(found: str | None, model: str) -> bool:
    """Rows ``found`` answered as ``model`` answers: the same fingerprint and adaptation (the name
    before ``@`` is a label; a run's bundle was called ``bundle`` before it was named by its run)."""
    return found is not None and found.partition("@")[2] == model.partition("@")[2]


def other_model(path: Path, n: int, found: str | None, model: str) -> ValueError:
    return ValueError(f"{path}:{n}: rows answered by {found or 'a model serkit did not name (an older serkit)'}, not "
                      f"{model}: --resume would mix their answers; --force starts the output over, or write to a new file")


def _csv_files(path: Path, text: str, labels: Sequence[str], voices: bool = False,
               model: str | None = None) -> list[str]:
    with reading_csv(path):      # fields as long as serkit's own rows may be
        rows = list(csv.reader(io.StringIO(text)))
    if not rows:        # only a cut header line: nothing was scored
        return []
    header, columns = rows[0], csv_columns(labels, voices, model is not None)
    if header != columns:
        if header[:1] == ["file"] and "error" in header:
            if model is not None and header == columns[:-1]:
                raise other_model(path, 1, None, model)
            raise ValueError(f"{path}: its columns ({', '.join(header)}) are not this model's "
                             f"({', '.join(columns)}"
                             f"{', with --speakers voice' if voices else ''}); write to a new file")
        raise OutputError(f"{path}: not a serkit output (its first line is not serkit's header); "
                          "--resume left it unchanged: write to a new file")
    for n, row in enumerate(rows[1:], 2):
        if row and len(row) != len(header):
            raise OutputError(f"{path}:{n}: not a row serkit wrote ({len(row)} fields, not {len(header)}); "
                              "--resume left the file unchanged")
        if row and model is not None and not answered_alike(row[-1], model):
            raise other_model(path, n, row[-1], model)
    return [row[0] for row in rows[1:] if row]


def _jsonl_files(path: Path, text: str, labels: Sequence[str], model: str | None = None) -> list[str]:
    files = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if (not isinstance(row, dict) or not REQUIRED_KEYS <= set(row) <= ROW_KEYS
                or not isinstance(row["file"], str)):
            raise OutputError(f"{path}:{n}: not a row serkit wrote; is this a serkit output? "
                              "--resume left it unchanged: write to a new file")
        if row.get("probabilities") and sorted(row["probabilities"]) != sorted(labels):
            raise ValueError(f"{path}:{n}: rows of other labels ({', '.join(row['probabilities'])}); "
                             "write to a new file")
        if model is not None and not answered_alike(row.get("model"), model):
            raise other_model(path, n, row.get("model"), model)
        files.append(row["file"])
    return files


class ResultWriter:
    """Appends rows to a ``.csv`` or ``.jsonl`` file, flushed to disk after every :meth:`write`.

    An existing output is continued with ``resume`` (after :func:`read_done` checked it) or
    started over with ``force``; otherwise, and when it is one of ``inputs``, it is refused.
    """

    def __init__(self, path: str | os.PathLike, labels: Sequence[str], resume: bool = False,
                 force: bool = False, inputs: Sequence[str | os.PathLike] = (), voices: bool = False,
                 model: str | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"--output {self.path}: use a .csv or .jsonl file")
        self.labels, self.voices = list(labels), voices     # voices: CSV rows carry a voice column
        self.model = model                                  # what answers the rows (model_id), in each
        check_output_file(self.path, inputs=inputs, resume=resume, force=force, flag="--output",
                          hint="pass --resume to continue that job, --force to start it over, or "
                               "choose another file")
        exists = self.path.is_file() and self.path.stat().st_size > 0
        self.done = read_done(self.path, self.labels, voices, model) if exists and resume else set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # surrogateescape: a file name that is not UTF-8 is written as its own bytes (and read back so)
        self.fh = open(self.path, "a" if resume else "w", newline="", encoding="utf-8", errors="surrogateescape")
        if self.path.suffix.lower() == ".csv" and self.fh.tell() == 0:
            self.fh.write(self._csv_line(csv_columns(self.labels, self.voices, model is not None)))
            self._sync()

    @staticmethod
    def _csv_line(values: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(values)
        return buf.getvalue()

    def _sync(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def write(self, results: Iterable[Prediction]) -> None:
        """Append ``results`` in one write, then flush: a kill leaves whole rows (and at most one
        cut line, which :func:`read_done` drops)."""
        if self.path.suffix.lower() == ".csv":
            text = "".join(self._csv_line(csv_row(r, self.labels, self.voices, self.model)) for r in results)
        else:
            named = {} if self.model is None else {"model": self.model}
            text = "".join(to_json({**prediction_dict(r), **named}, ensure_ascii=False) + "\n" for r in results)
        self.fh.write(text)
        self._sync()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------ the job

class DecodeDataset:
    """``files[i] -> (file, wave or None, error or None)`` (:func:`serkit.audio.decode_item`)."""

    def __init__(self, files: Sequence[str], sample_rate: int):
        self.files, self.sample_rate = list(files), sample_rate

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Decoded:
        return decode_item(self.files[i], self.sample_rate)


def _as_list(batch: list) -> list:
    return batch


def header_seconds(path: str) -> float:
    """The length a file's header states (0 when it cannot be read: decoding will say why)."""
    import soundfile as sf

    if not os.path.isfile(path):      # missing, a folder, or a FIFO (whose open would wait for a writer)
        return 0.0
    try:
        info = sf.info(os.fsencode(path))
        return info.frames / info.samplerate if info.frames < 2 ** 62 else MAX_SECONDS
    except (RuntimeError, sf.LibsndfileError, OSError, ValueError, TypeError, EOFError, ZeroDivisionError):
        return 0.0


class budget_batches:
    """Indices of ``files`` in order, in groups of at most ``batch_size`` files whose stated lengths
    add up to at most ``max_seconds`` (a longer file is a group of its own, which decoding refuses),
    so the audio a batch holds in memory is bounded however long the files are. Lazy (headers are
    read as the groups are taken) and iterable again, as a DataLoader's ``batch_sampler``."""

    def __init__(self, files: Sequence[str], batch_size: int, max_seconds: float = MAX_SECONDS):
        self.files, self.batch_size, self.max_seconds = files, batch_size, max_seconds

    def __iter__(self) -> Iterator[list[int]]:
        group: list[int] = []
        seconds = 0.0
        for i, f in enumerate(self.files):
            length = header_seconds(f)
            if group and (len(group) >= self.batch_size or seconds + length > self.max_seconds):
                yield group
                group, seconds = [], 0.0
            group.append(i)
            seconds += length
        if group:
            yield group


@dataclass
class BatchSummary:
    output: Path
    total: int          # distinct input files
    skipped: int        # already in the output (resume)
    scored: int
    failed: int
    duplicates: int     # repeated input paths, scored once
    voices: list[int] = field(default_factory=list)   # same_speaker: stretches of speech of each group scored
    groups: int = 0     # same_speaker: voices the files are, scored now or before

    def line(self) -> str:
        parts = [f"{self.scored} scored", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate paths ignored")
        return f"{self.output}: {self.total} files: " + ", ".join(parts)


def unique(files: Iterable[str]) -> tuple[list[str], int]:
    """The files once each (:func:`file_key`), in the spelling of their first mention, and the
    number of repeats left out."""
    seen: dict[str, str] = {}
    n = 0
    for f in files:
        n += 1
        seen.setdefault(file_key(f), str(f))
    return list(seen.values()), n - len(seen)


def write_batches(batches: Iterable[list[Prediction]], writer: ResultWriter, total: int, skipped: int,
                  description: str, progress: bool,
                  on_batch: Callable[[list[Prediction]], None] | None = None) -> tuple[int, int]:
    """Write each batch of predictions (flushed), count them and show progress: (scored, failed).

    Shared by the local engine and the Ray engine, so both write and count alike.
    """
    import time

    scored = failed = 0
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=total, completed=skipped, rate="")
        for results in batches:
            writer.write(results)
            bad = sum(1 for r in results if r.error)
            failed += bad
            scored += len(results) - bad
            rate = (scored + failed) / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=len(results), rate=f"{rate:.1f} files/s")
            if on_batch is not None:
                on_batch(results)
    return scored, failed


def answer_groups(predictor: Predictor, groups: Iterable[tuple[int, Sequence[str]]], batch_size: int,
                  tag_voices: bool = False, on_clip: Callable | None = None) -> Iterator[tuple[list[Prediction], int]]:
    """Each (k, files) group answered as one voice (:meth:`Predictor.predict_same_speaker`), in
    turn: its answers and the stretches of speech heard in it; with ``tag_voices`` (``--speakers
    voice``) each answer says the voice ``k`` its file was heard as. ``on_clip`` sees each analysis."""
    for k, files in groups:
        heard: list[int] = []

        def seen(a) -> None:
            heard.append(units_heard(a))
            if on_clip is not None:
                on_clip(a)
        rows = predictor.predict_same_speaker(files, batch_size, on_clip=seen)
        for r in rows if tag_voices else ():
            r.voice = k
        yield rows, sum(heard)


def run_batch(predictor: Predictor, files: Iterable[str | os.PathLike], output: str | os.PathLike, *,
              batch_size: int = 32, workers: int = 0, resume: bool = False, progress: bool = True,
              on_batch: Callable[[list[Prediction]], None] | None = None, force: bool = False,
              inputs: Sequence[str | os.PathLike] = (), same_speaker: bool = False,
              speakers: str = "one") -> BatchSummary:
    """Score ``files`` into ``output`` (.csv or .jsonl), appending and flushing per batch.

    ``on_batch`` is called with each batch's predictions after they are on disk. ``inputs``
    (what the user named: files, folders, manifests) are never written to; ``force`` starts an
    existing output over (see :class:`ResultWriter`). ``same_speaker``: each group of files that
    is one voice (:func:`speaker_groups` by ``speakers``) is answered as
    :meth:`~serkit.inference.Predictor.predict_same_speaker` answers it, and its rows are written
    when its last file is scored; a resumed job scores again every file of a group it had not
    finished (the answers depend on all of them) and writes the rows it lacks.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1 or workers < 0:
        raise ValueError("--batch-size must be at least 1 and --workers at least 0")
    files, duplicates = unique(str(f) for f in files)
    if same_speaker:
        predictor.check_can_adapt()
        groups = speaker_groups(files, speakers, inputs)      # before the output is touched
    by_voice = same_speaker and speakers == "voice"
    with ResultWriter(output, predictor.labels, resume=resume, force=force, inputs=inputs, voices=by_voice,
                      model=model_id(predictor, same_speaker, speakers)) as writer:
        todo = [f for f in files if file_key(f) not in writer.done]
        skipped = len(files) - len(todo)
        if same_speaker:
            pending = [(k, [files[i] for i in g]) for k, g in enumerate(groups)
                       if any(file_key(files[i]) not in writer.done for i in g)]
            with progress_bar(progress) as bar:
                task = bar.add_task("scoring (each group one voice)", total=sum(len(g) for _, g in pending), rate="")
                voices: list[int] = []

                def answered():
                    for rows, heard in answer_groups(predictor, pending, batch_size, by_voice,
                                                     lambda a: bar.advance(task)):
                        voices.append(heard)
                        yield [r for r in rows if file_key(r.file) not in writer.done]
                scored, failed = write_batches(answered(), writer, len(files), skipped, "writing", False, on_batch)
            return BatchSummary(Path(output), len(files), skipped, scored, failed, duplicates, voices, len(groups))
        loader = DataLoader(DecodeDataset(todo, predictor.sample_rate), batch_sampler=budget_batches(todo, batch_size),
                            num_workers=workers, collate_fn=_as_list)
        batches = (predictor.predict_decoded(items, batch_size) for items in (loader if todo else []))
        scored, failed = write_batches(batches, writer, len(files), skipped, "scoring", progress, on_batch)
    return BatchSummary(Path(output), len(files), skipped, scored, failed, duplicates)

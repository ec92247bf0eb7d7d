"""How serkit shows results, defined once: the emotion colours and the number convention.

- Colours: :data:`EMOTION_COLORS` gives each canonical emotion one colour, used by the web page
  (sent to it in the page's settings) and by the PNG timeline plot; labels outside it take
  :data:`EXTRA_COLORS` by their position among the model's labels.
- Numbers in machine-readable output (JSON, JSONL, CSV, the web API): probabilities and
  confidences with :data:`PROB_DECIMALS` decimals, times and durations in seconds with
  :data:`SECONDS_DECIMALS` (milliseconds). Views for people round further: the terminal table
  shows probabilities with 2 decimals, the web page percentages with one.
- File names in tables: relative to the folder they share (:func:`relative_names`), cut at the
  start when too long (:func:`cut_start`); :func:`predictions_table` is ``serkit predict``'s.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

PROB_DECIMALS = 4
SECONDS_DECIMALS = 3

#: One colour per canonical emotion (red is angry everywhere, purple fearful, blue sad...).
EMOTION_COLORS: dict[str, str] = {
    "angry": "#d64541", "happy": "#e5a50a", "sad": "#3b6fd4", "fearful": "#8e5bd0",
    "disgust": "#3d9a50", "neutral": "#7d8590", "surprised": "#ee7b30", "calm": "#1f9e9e",
    "boredom": "#a07850",
}
#: Colours for labels that are not canonical emotions, chosen by the label's index.
EXTRA_COLORS: tuple[str, ...] = ("#c2185b", "#00897b", "#5e35b1", "#f4511e", "#6d4c41", "#039be5")


def emotion_color(label: str, index: int = 0) -> str:
    """The colour of ``label`` (``index``: its position among the model's labels)."""
    return EMOTION_COLORS.get(label) or EXTRA_COLORS[index % len(EXTRA_COLORS)]


def prob(x: float) -> float:
    return round(float(x), PROB_DECIMALS)


def seconds(x: float) -> float:
    return round(float(x), SECONDS_DECIMALS)


def probs(p: Mapping[str, float]) -> dict[str, float]:
    return {k: prob(v) for k, v in p.items()}


def prediction_dict(p: Any) -> dict[str, Any]:
    """A :class:`serkit.inference.Prediction` as JSON-ready values in the number convention."""
    d = dict(p.to_dict())
    d["confidence"] = None if d.get("confidence") is None else prob(d["confidence"])
    d["probabilities"] = probs(d.get("probabilities") or {})
    d["duration_s"] = None if d.get("duration_s") is None else seconds(d["duration_s"])
    return d


def relative_names(paths: Sequence[str]) -> tuple[str, list[str]]:
    """The folder the paths share and each path relative to it: ``("", paths)`` when they share
    none (so a table shows what differs instead of the same long prefix on every row)."""
    if not paths:
        return "", []
    try:
        common = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:          # absolute and relative paths mixed, or different drives
        return "", list(paths)
    if common in ("", ".", os.sep):
        return "", list(paths)
    return common, [os.path.relpath(p, common) for p in paths]


def cut_start(text: str, width: int) -> str:
    """``text`` cut from the start to ``width`` characters ("…" marks the cut): the end of a
    path, the file's own name, is what tells rows apart."""
    if width < 2 or len(text) <= width:
        return text
    return "…" + text[-(width - 1):]


#: What a "?" after an emotion means in serkit's tables.
UNCERTAIN_CAPTION = "? uncertain: the top emotion is under 0.5 or within 0.1 of the runner-up"


def predictions_table(results: Sequence[Any], model_name: str, width: int) -> tuple[str, Any]:
    """The folder the files share and the predictions as a rich table that fits ``width``
    columns: file names relative to that folder, cut at the start if still too long."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    folder, names = relative_names([r.file for r in results])
    runners = []
    for r in results:
        top = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[1:3] if r.emotion else []
        runners.append(r.error or ("  ".join(f"{k} {v:.2f}" for k, v in top) if r.emotion else r.reason or ""))
    emotion_w = max([len("emotion"), *(len(r.emotion or "no speech") + 1 for r in results)])
    runner_w = max([len("runners-up"), *(len(t) for r, t in zip(results, runners) if r.emotion)])  # reasons wrap
    name_w = max(12, width - 6 - emotion_w - len("confidence") - runner_w)   # 6: 3 gaps of 2
    names = [escape(cut_start(n, name_w)) for n in names]
    table = Table(title=escape(f"Predictions ({model_name})"),
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("file", no_wrap=True, min_width=min(name_w, max(map(len, names))))
    told = any(getattr(r, "voice", None) is not None for r in results)     # --speakers voice
    if told:
        table.add_column("voice", justify="right")
    table.add_column("emotion")
    table.add_column("confidence", justify="right")
    table.add_column("runners-up")
    for r, name, runner in zip(results, names, runners):
        lead = [name, *([] if not told else ["" if r.voice is None else str(r.voice)])]
        if r.error:
            table.add_row(*lead, "[red]error[/]", "", escape(runner))
        elif r.emotion is None:
            table.add_row(*lead, "no speech", "", escape(runner))
        else:
            table.add_row(*lead, r.emotion + ("?" if r.uncertain else ""), f"{r.confidence:.2f}", runner)
    if any(r.uncertain for r in results):
        table.caption = UNCERTAIN_CAPTION
    return folder, table


def progress_bar(enabled: bool = True):
    """A rich progress bar on stderr (files done, rate, time left); disabled: a no-op one."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)

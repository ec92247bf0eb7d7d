"""The page blueprint: one HTML page; the browser does the rest through the JSON API."""
from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, current_app, render_template

from serkit.version import __version__
from serkit.display import EMOTION_COLORS, EXTRA_COLORS
from serkit.scorer import MIN_SECONDS
from serkit.web.service import service

bp = Blueprint("page", __name__)


def held_out(config: dict[str, Any]) -> dict[str, float]:
    """What the page quotes from a bundle's held-out test figures: its accuracy, clip count, and
    how often an answer flagged uncertain (and one not flagged) was right. Numbers only; a
    figure the bundle lacks (or holds as something else) is left out, and so is everything for a
    model trained on a random split, whose test speakers were also in training."""
    training = config.get("training")
    split = (training.get("config") or {}).get("split") if isinstance(training, dict) else None
    if split == "random":
        return {}
    metrics = config.get("metrics")
    test = metrics.get("test") if isinstance(metrics, dict) else None
    test = test if isinstance(test, dict) else {}
    flags = test.get("uncertain") if isinstance(test.get("uncertain"), dict) else {}
    found = {"accuracy": test.get("accuracy"), "n": test.get("n"),
             "flagged_right": flags.get("accuracy_flagged"), "unflagged_right": flags.get("accuracy_unflagged")}
    return {k: v for k, v in found.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


@bp.get("/")
def index():
    s = service()
    settings = {
        "default": s.default,
        "models": [{"name": m.name, "labels": m.predictor.labels,
                    "window_s": m.predictor.clip_samples / m.predictor.sample_rate,
                    "held_out": held_out(m.predictor.config), "can_adapt": m.predictor.can_adapt,
                    "can_tell_voices": m.can_tell_voices}
                   for m in s.models.values()],
        "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
        "max_seconds": s.limits.max_seconds,
        "min_seconds": MIN_SECONDS,
        "vad": current_app.config["SERKIT_TIMELINE_VAD"],
        "colors": EMOTION_COLORS,             # the PNG timeline plot's palette too
        "extra_colors": EXTRA_COLORS,
    }
    return render_template("index.html", settings=settings, version=__version__)

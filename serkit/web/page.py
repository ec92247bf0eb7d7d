"""The page blueprint: one HTML page; the browser does the rest through the JSON API."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from serkit.version import __version__
from serkit.display import EMOTION_COLORS, EXTRA_COLORS
from serkit.scorer import MIN_SECONDS
from serkit.web.service import service

bp = Blueprint("page", __name__)


@bp.get("/")
def index():
    s = service()
    settings = {
        "default": s.default,
        "models": [{"name": m.name, "labels": m.predictor.labels,
                    "window_s": m.predictor.clip_samples / m.predictor.sample_rate}
                   for m in s.models.values()],
        "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
        "max_seconds": s.limits.max_seconds,
        "min_seconds": MIN_SECONDS,
        "vad": current_app.config["SERKIT_TIMELINE_VAD"],
        "colors": EMOTION_COLORS,             # the PNG timeline plot's palette too
        "extra_colors": EXTRA_COLORS,
    }
    return render_template("index.html", settings=settings, version=__version__)

"""The JSON API blueprint: /api/predict, /api/models, /api/openapi.json and /healthz."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from serkit import __version__
from serkit.web import ServedModel, service
from serkit.web.openapi import openapi_spec
from serkit.web.uploads import ApiError, decode_upload

bp = Blueprint("api", __name__)


def read_upload() -> tuple[str | None, bytes]:
    """The requested model name and the audio bytes: multipart field ``file``, or the raw body."""
    if request.mimetype == "multipart/form-data":
        try:
            upload = request.files.get("file")
            name = request.form.get("model") or request.args.get("model")
        except ValueError:       # werkzeug's multipart parser on a malformed body
            raise ApiError(400, "bad_request", "The multipart body cannot be parsed.") from None
        service().model(name)    # an unknown model is a 404 even without a file
        if upload is None:
            raise ApiError(400, "no_file", "No audio in the request: send it in the multipart field "
                           "'file', or as the raw request body.")
        return name, upload.read()
    name = request.args.get("model")
    service().model(name)
    return name, request.get_data(cache=False)


@bp.post("/api/predict")
def predict():
    started = time.perf_counter()
    name, data = read_upload()
    served = service().model(name)
    p = served.predictor
    wave = decode_upload(data, p.sample_rate, service().limits)
    bounds, probs = p.window_proba(wave)
    return jsonify(prediction(served, wave, bounds, probs, started))


def prediction(served: ServedModel, wave: np.ndarray, bounds: np.ndarray, probs: np.ndarray,
               started: float) -> dict[str, Any]:
    p = served.predictor
    mean = probs.mean(axis=0)
    best = int(np.argmax(mean))
    timeline = [] if len(bounds) < 2 else [
        {"start": round(float(s) / p.sample_rate, 3), "end": round(float(e) / p.sample_rate, 3),
         "emotion": p.labels[int(np.argmax(row))], "probabilities": as_dict(p.labels, row)}
        for (s, e), row in zip(bounds, probs)
    ]
    return {
        "emotion": p.labels[best],
        "confidence": round(float(mean[best]), 4),
        "probabilities": as_dict(p.labels, mean),
        "model": served.name,
        "duration_s": round(len(wave) / p.sample_rate, 3),
        "window_s": p.clip_samples / p.sample_rate,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        "timeline": timeline,
    }


def as_dict(labels: list[str], probs: np.ndarray) -> dict[str, float]:
    return {label: round(float(v), 4) for label, v in zip(labels, probs)}


@bp.get("/api/models")
def models():
    s = service()
    return jsonify({"default": s.default, "models": [m.info() for m in s.models.values()],
                    "limits": limits()})


def limits() -> dict[str, Any]:
    s = service()
    return {"max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
            "max_seconds": s.limits.max_seconds, "min_seconds": s.limits.min_seconds}


@bp.get("/api/openapi.json")
def openapi():
    s = service()
    return jsonify(openapi_spec(sorted(s.models), s.default, limits()))


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "version": __version__, "models": sorted(service().models)})

"""The JSON API blueprint: /api/predict, /api/models, /api/openapi.json and /healthz."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from serkit import __version__
from serkit.config import VADS
from serkit.display import prob, seconds
from serkit.timeline import Timeline
from serkit.web import ServedModel, service
from serkit.web.openapi import openapi_spec
from serkit.web.uploads import ApiError, decode_upload

bp = Blueprint("api", __name__)


def read_upload() -> tuple[str | None, str, bytes]:
    """The requested model name, the timeline's VAD and the audio bytes: multipart field
    ``file`` (``model`` and ``vad`` as fields or query parameters), or the raw body."""
    if request.mimetype == "multipart/form-data":
        try:
            upload = request.files.get("file")
            name = request.form.get("model") or request.args.get("model")
            vad = request.form.get("vad") or request.args.get("vad")
        except ValueError:       # werkzeug's multipart parser on a malformed body
            raise ApiError(400, "bad_request", "The multipart body cannot be parsed.") from None
        service().model(name)    # an unknown model is a 404 even without a file
        vad = check_vad(vad)
        if upload is None:
            raise ApiError(400, "no_file", "No audio in the request: send it in the multipart field "
                           "'file', or as the raw request body.")
        return name, vad, upload.read()
    name = request.args.get("model")
    service().model(name)
    vad = check_vad(request.args.get("vad"))
    return name, vad, request.get_data(cache=False)


def check_vad(vad: str | None) -> str:
    """The timeline's voice-activity detector: the request's, else the server's default."""
    vad = vad or current_app.config["SERKIT_TIMELINE_VAD"]
    if vad not in VADS:
        raise ApiError(400, "bad_request", f"Unknown vad {vad!r}; use one of: {', '.join(VADS)}.")
    return vad


@bp.post("/api/predict")
def predict():
    started = time.perf_counter()
    name, vad, data = read_upload()
    served = service().model(name)
    p = served.predictor
    wave = decode_upload(data, p.sample_rate, service().limits)
    probs = p.predict_proba([wave])[0]
    timeline = p.predict_timeline(wave, vad=vad) if len(wave) > p.clip_samples else None
    return jsonify(prediction(served, wave, probs, timeline, started))


def prediction(served: ServedModel, wave: np.ndarray, probs: np.ndarray, timeline: Timeline | None,
               started: float) -> dict[str, Any]:
    """The response: the whole clip's emotion (its windows' mean, as ``serkit predict`` gives it)
    and, for clips longer than one window, the timeline of speech segments."""
    p = served.predictor
    best = int(np.argmax(probs))
    segments = [] if timeline is None else timeline.to_dict()["segments"]
    return {
        "emotion": p.labels[best],
        "confidence": prob(probs[best]),
        "probabilities": as_dict(p.labels, probs),
        "model": served.name,
        "duration_s": seconds(len(wave) / p.sample_rate),
        "window_s": p.clip_samples / p.sample_rate,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        "vad": None if timeline is None else timeline.vad,
        "speech_s": None if timeline is None else seconds(sum(s.end - s.start for s in timeline.segments)),
        "timeline": segments,
    }


def as_dict(labels: list[str], probs: np.ndarray) -> dict[str, float]:
    return {label: prob(v) for label, v in zip(labels, probs)}


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
    return jsonify(openapi_spec(sorted(s.models), s.default, limits(), current_app.config["SERKIT_TIMELINE_VAD"]))


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "version": __version__, "models": sorted(service().models)})

"""The JSON API blueprint: /api/predict, /api/models, /api/openapi.json and /healthz."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from serkit import __version__
from serkit.config import VADS
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
        except ValueError as exc:       # werkzeug's multipart parser on a malformed body
            raise ApiError(400, "bad_request", f"The multipart body cannot be parsed ({exc}).") from None
        except RequestEntityTooLarge:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            if limit and (request.content_length or 0) > limit:
                raise                    # the body itself is too large: the 413 handler says so
            raise ApiError(400, "bad_request", f"The multipart body has more than {request.max_form_parts} "
                           f"parts or a form field over {request.max_form_memory_size} bytes; send the audio "
                           "in the field 'file' and at most the fields 'model' and 'vad'.") from None
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
    segments = [] if timeline is None else [
        {"start": s.start, "end": s.end, "emotion": s.emotion, "confidence": round(s.confidence, 4),
         "probabilities": {label: round(v, 4) for label, v in s.probabilities.items()}, "windows": s.windows}
        for s in timeline.segments]
    return {
        "emotion": p.labels[best],
        "confidence": round(float(probs[best]), 4),
        "probabilities": as_dict(p.labels, probs),
        "model": served.name,
        "duration_s": round(len(wave) / p.sample_rate, 3),
        "window_s": p.clip_samples / p.sample_rate,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        "vad": None if timeline is None else timeline.vad,
        "speech_s": None if timeline is None else round(sum(s.end - s.start for s in timeline.segments), 3),
        "timeline": segments,
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
    return jsonify(openapi_spec(sorted(s.models), s.default, limits(), current_app.config["SERKIT_TIMELINE_VAD"]))


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "version": __version__, "models": sorted(service().models)})

"""The JSON API blueprint: /api/predict, /api/models, /api/openapi.json and /healthz."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from serkit.audio import AudioError
from serkit.version import __version__
from serkit.config import VADS
from serkit.display import prob, seconds
from serkit.scorer import MIN_SECONDS, Analysis, window_starts
from serkit.web.service import ServedModel, service
from serkit.web.openapi import openapi_spec
from serkit.web.uploads import ApiError, decode_upload

bp = Blueprint("api", __name__)


def read_upload() -> tuple[str | None, str, tuple[bool, bool], bytes]:
    """The requested model name, the timeline's VAD, whether the audio is one voice and whether
    its voices are to be told apart (:func:`check_same_speaker`) and the audio bytes: multipart field ``file`` (``model``, ``vad``, ``same_speaker`` and ``speakers`` as fields
    or query parameters), or the raw body."""
    if request.mimetype == "multipart/form-data":
        try:
            upload = request.files.get("file")
            field = lambda key: request.form.get(key) or request.args.get(key)   # noqa: E731
            name, vad, same, who = field("model"), field("vad"), field("same_speaker"), field("speakers")
        except ValueError as exc:       # werkzeug's multipart parser on a malformed body
            raise ApiError(400, "bad_request", f"The multipart body cannot be parsed ({exc}).") from None
        except RequestEntityTooLarge:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            if limit and (request.content_length or 0) > limit:
                raise                    # the body itself is too large: the 413 handler says so
            raise ApiError(400, "bad_request", f"The multipart body has more than {request.max_form_parts} "
                           f"parts or a form field over {request.max_form_memory_size} bytes; send the audio "
                           "as a file in the field 'file' (curl -F file=@clip.wav) and at most the fields 'model', 'vad', 'same_speaker' and 'speakers'.") from None
        same = check_same_speaker(name, same, who)    # an unknown model is a 404 even without a file
        vad = check_vad(vad)
        if upload is None and "file" in request.form:     # curl -F "file=<clip.wav": the bytes as text
            raise ApiError(400, "no_file", "The field 'file' was sent as text, not as a file: send the file "
                           "itself (a part with a file name), e.g. curl -F file=@clip.wav.")
        if upload is None:
            raise ApiError(400, "no_file", "No audio in the request: send it in the multipart field "
                           "'file', or as the raw request body.")
        return name, vad, same, upload.read()
    name = request.args.get("model")
    same = check_same_speaker(name, request.args.get("same_speaker"), request.args.get("speakers"))
    vad = check_vad(request.args.get("vad"))
    return name, vad, same, request.get_data(cache=False)


def check_same_speaker(name: str | None, value: str | None, speakers: str | None = None) -> tuple[bool, bool]:
    """Whether the upload is to be adapted to its voice (``same_speaker``: ``true``/``1``/``on`` or
    ``false``/``0``/``off``/absent; 400 for anything else, and for a model that cannot adapt; 404
    for an unknown model) and whether its voices are first told apart (``speakers``: ``one`` or
    absent, or ``voice``, which needs same_speaker and SciPy on the server)."""
    served = service().model(name)
    text = (value or "").strip().lower()
    if text not in ("", "true", "1", "on", "false", "0", "off"):
        raise ApiError(400, "bad_request", f"same_speaker {value!r}: use true or false.")
    same = text in ("true", "1", "on")
    if same and not served.predictor.can_adapt:
        raise ApiError(400, "cannot_adapt", f"The model {served.name!r} cannot adapt to one voice (it has no "
                       "speaker head); send the audio without same_speaker, or choose a model that can.")
    who = (speakers or "one").strip().lower()
    if who not in ("one", "voice"):
        raise ApiError(400, "bad_request", f"speakers {speakers!r}: use one or voice.")
    if who == "voice" and not same:
        raise ApiError(400, "bad_request", "speakers=voice tells the voices apart to adapt to each: add same_speaker=true.")
    if who == "voice" and not served.can_tell_voices:
        raise ApiError(400, "cannot_tell_voices", "This server cannot tell voices apart (SciPy is not installed: "
                       "pip install 'serkit[voices]'); send the audio without speakers=voice.")
    return same, who == "voice"


def check_vad(vad: str | None) -> str | None:
    """The speech detector: the request's, else the server's, else (None) the model's own."""
    vad = vad or current_app.config["SERKIT_TIMELINE_VAD"]
    if vad is not None and vad not in VADS:
        raise ApiError(400, "bad_request", f"Unknown vad {vad!r}; use one of: {', '.join(VADS)}.")
    return vad


@bp.post("/api/predict")
def predict():
    started = time.perf_counter()
    name, vad, same, data = read_upload()
    served = service().model(name)
    wave, note = decode_upload(data, served.predictor.sample_rate, service().limits)
    try:                                                                  # the model runs once
        analysis = (served.predictor.analyse_one_voice(wave, vad=vad, voices=same[1]) if same[0]
                    else served.predictor.scorer.analyse([wave], vad=vad)[0])
    except AudioError as exc:   # the upload passed every check: no finite scores is the model's fault
        current_app.logger.error("model %s on an upload: %s", served.name, exc)
        raise ApiError(500, "non_finite_scores", "The model gave no finite scores for this audio; "
                       "this is a fault of the model, please report it.") from None
    return jsonify({**prediction(served, wave, analysis, started), "note": note})


def prediction(served: ServedModel, wave: np.ndarray, a: Analysis, started: float) -> dict[str, Any]:
    """The response: the clip's emotion as ``serkit predict`` gives it (speech first; for speech
    longer than one window, the duration-weighted mean of its segments), or no emotion and the
    reason; for clips longer than one window, the scored speech segments as a timeline;
    ``adapted``: whether they were answered as one voice (``same_speaker``); ``voices``: how many
    voices were told apart (``speakers=voice``; each segment then says its ``voice``), else null."""
    p = served.predictor
    sr = p.sample_rate
    r = p.prediction(served.name, a)
    long = len(wave) > p.clip_samples
    segments = [] if not long or a.segment_probabilities is None else [
        {"start": seconds(s / sr), "end": seconds(e / sr), "emotion": p.labels[int(np.argmax(q))],
         "confidence": prob(q.max()), "uncertain": p.scorer.is_uncertain(q), "probabilities": as_dict(p.labels, q),
         "windows": len(window_starts(e - s, p.clip_samples, p.spec.hop_samples)),
         **({"voice": a.voices[k]} if a.voices is not None else {})}
        for k, ((s, e), q) in enumerate(zip(a.segments, a.segment_probabilities))]
    return {
        "emotion": r.emotion,
        "confidence": None if r.confidence is None else prob(r.confidence),
        "uncertain": r.uncertain,
        "reason": r.reason,
        "probabilities": r.probabilities or {},
        "model": served.name,
        "duration_s": r.duration_s,
        "speech_s": r.speech_s,
        "window_s": p.spec.clip_seconds,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        "vad": a.vad,
        "adapted": a.adapted,
        "voices": None if a.voices is None else len(set(a.voices)),
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
            "max_seconds": s.limits.max_seconds, "min_seconds": MIN_SECONDS}


@bp.get("/api/openapi.json")
def openapi():
    s = service()
    return jsonify(openapi_spec(sorted(s.models), s.default, limits(), current_app.config["SERKIT_TIMELINE_VAD"]))


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "version": __version__, "models": sorted(service().models)})

"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json with the live limits."""
from __future__ import annotations

from typing import Any

from serkit.version import __version__
from serkit.config import VADS

ERROR_CODES = {
    "400": "Undecodable audio: an audio signature but corrupt or truncated data (a header only, or "
           "fewer samples than the header states), an empty upload, no `file` field, an unsupported "
           "sample rate or channel count; or a malformed multipart body (broken framing, more parts "
           "than the form parser takes); or same_speaker for a model that cannot adapt (cannot_adapt); or "
           "speakers=voice on a server without SciPy (cannot_tell_voices).",
    "404": "Unknown model name.",
    "413": "Too large: the body exceeds the upload limit, or the audio exceeds the duration limit "
           "(checked from the header, before decoding).",
    "415": "Not audio (text, images, random bytes), or an audio container the server does not read "
           "(WebM, MP4/M4A, AAC, AMR, WMA).",
    "422": "Decodable but unusable audio: samples far outside [-1, 1] (out_of_range). Audio too short, "
           "silent or without speech is answered (200) with no emotion and a reason.",
    "500": "The server failed (a bug; it is logged), e.g. the model gave no finite scores "
           "(non_finite_scores).",
}


def _error() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Error"}


def openapi_spec(models: list[str], default: str, limits: dict[str, Any], vad: str | None = None) -> dict[str, Any]:
    probs = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
             "description": "Calibrated probability of every class, in the model's label order."}
    json_of = lambda schema: {"application/json": {"schema": schema}}  # noqa: E731
    model_param = {"type": "string", "enum": models, "default": default}
    vad_param = {"type": "string", "enum": list(VADS), **({"default": vad} if vad else {})}
    same_param = {"type": "string", "enum": ["true", "false", "1", "0", "on", "off"], "default": "false"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "serkit speech emotion recognition API",
            "version": __version__,
            "description": (
                "Send a clip, get the emotion. Limits on this server: "
                f"{limits['max_upload_bytes']} bytes per request, "
                f"up to {limits['max_seconds']:g} s of audio (shorter than {limits['min_seconds']:g} s: "
                "no speech). Uploads are "
                "decoded in memory; the file name is ignored. Errors are JSON with the same status."),
        },
        "paths": {
            "/api/predict": {"post": {
                "summary": "Predict the emotion of one clip",
                "description": "WAV, FLAC, OGG (Vorbis/Opus), MP3, AIFF, at any rate from 4 to 192 kHz "
                               "and any channel count up to 8 (mixed to mono, resampled to the model's "
                               "rate). Speech first: a voice-activity detector (`vad`) finds the "
                               "speech; a clip without any gets no emotion and a `reason`. Speech that "
                               "fits the model's window is scored as one piece; longer speech is scored "
                               "per segment (each the mean of its 50 % overlapping windows' logits) and "
                               "the emotion is the duration-weighted mean of the segments, which clips "
                               "longer than one window also get as their `timeline`.",
                "parameters": [{"name": "model", "in": "query", "required": False, "schema": model_param,
                                "description": "Model to use (also accepted as a multipart field)."},
                               {"name": "vad", "in": "query", "required": False, "schema": vad_param,
                                "description": "The speech detector (also accepted as a multipart "
                                               "field): silero, energy (any loud sound), auto (silero "
                                               "when onnxruntime is installed) or none (the clip in pieces of one window); "
                                               "default: the server's, else the model's own."},
                               {"name": "same_speaker", "in": "query", "required": False, "schema": same_param,
                                "description": "The recording is one voice (also accepted as a multipart "
                                               "field): its speech segments are answered adapted to that "
                                               "voice, and the emotion is their duration-weighted mean "
                                               "(needs two segments or more; `adapted` says whether it "
                                               "happened). Only models whose `can_adapt` is true; others "
                                               "answer 400 cannot_adapt."},
                               {"name": "speakers", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["one", "voice"], "default": "one"},
                                "description": "With same_speaker: `voice` tells the recording's voices apart "
                                               "(a call; a speaker-embedding model and clustering), gives each "
                                               "timeline segment its `voice` and adapts each voice's segments to "
                                               "it; `voices` says how many were heard. A server without SciPy "
                                               "answers 400 cannot_tell_voices (also a multipart field)."}],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "string", "format": "binary"}, "model": model_param,
                        "vad": vad_param, "same_speaker": same_param,
                        "speakers": {"type": "string", "enum": ["one", "voice"]}}}},
                    "audio/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                }},
                "responses": {
                    "200": {"description": "The prediction", "content": json_of({"$ref": "#/components/schemas/Prediction"})},
                    **{code: {"description": text, "content": json_of(_error())} for code, text in ERROR_CODES.items()},
                },
            }},
            "/api/models": {"get": {
                "summary": "The served models: labels, audio settings and test metrics from each bundle",
                "responses": {"200": {"description": "Models and limits", "content": json_of({
                    "type": "object", "properties": {
                        "default": {"type": "string"},
                        "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                        "limits": {"$ref": "#/components/schemas/Limits"}}})}},
            }},
            "/api/openapi.json": {"get": {"summary": "This document",
                                          "responses": {"200": {"description": "OpenAPI 3.1 JSON"}}}},
            "/healthz": {"get": {"summary": "Liveness: the models are loaded and the server answers",
                                 "responses": {"200": {"description": "OK", "content": json_of({
                                     "type": "object", "properties": {
                                         "status": {"const": "ok"}, "version": {"type": "string"},
                                         "models": {"type": "array", "items": {"type": "string"}}}})}}}},
        },
        "components": {"schemas": {
            "Prediction": {"type": "object", "required": [
                "emotion", "confidence", "uncertain", "reason", "probabilities", "model", "duration_s",
                "elapsed_ms", "timeline"],
                "properties": {
                    "emotion": {"type": ["string", "null"], "description": "The most probable class; null "
                                "when no speech was found"},
                    "confidence": {"type": ["number", "null"], "description": "Its probability"},
                    "uncertain": {"type": "boolean", "description": "The top class is below 0.5 (calibrated: "
                                  "more likely wrong than right) or within 0.1 of the runner-up"},
                    "reason": {"type": ["string", "null"], "description": "Why there is no emotion "
                               "(no speech detected, silent, too short)"},
                    "probabilities": probs,
                    "model": {"type": "string"},
                    "duration_s": {"type": "number", "description": "Length of the decoded audio"},
                    "window_s": {"type": "number", "description": "The model's window length"},
                    "elapsed_ms": {"type": "number", "description": "Server time: parse, decode, predict"},
                    "vad": {"type": "string", "description": "The speech detector used (silero, energy, "
                            "or none: the clip in pieces of one window)"},
                    "speech_s": {"type": "number", "description": "Seconds of speech scored"},
                    "adapted": {"type": "boolean", "description": "The segments were answered as one voice "
                                "(same_speaker, with two segments or more)"},
                    "voices": {"type": ["integer", "null"], "description": "Voices told apart (speakers=voice); "
                               "null otherwise"},
                    "note": {"type": ["string", "null"], "description": "What the answer should be read "
                             "with: a WAV cut short (it holds less than its header names) is scored on what "
                             "it holds; null otherwise"},
                    "timeline": {"type": "array", "description": "For clips longer than one window: the "
                                 "scored speech in time order, each piece scored like a clip (the mean of "
                                 "its 50 %-overlapping windows' logits); empty for shorter clips and when "
                                 "no speech is found", "items": {
                        "type": "object", "properties": {
                            "start": {"type": "number"}, "end": {"type": "number"},
                            "emotion": {"type": "string"}, "confidence": {"type": "number"},
                            "uncertain": {"type": "boolean", "description": "Flagged as a clip's answer is"},
                            "probabilities": probs,
                            "windows": {"type": "integer", "description": "Model windows averaged"},
                            "voice": {"type": "integer", "description": "Its voice, 0, 1, ... in order of "
                                      "first appearance (speakers=voice only)"}}}},
                }},
            "Model": {"type": "object", "properties": {
                "name": {"type": "string"}, "model_type": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"}},
                "audio": {"type": "object", "properties": {"sample_rate": {"type": "integer"},
                                                           "clip_seconds": {"type": "number"}}},
                "temperature": {"type": "number"}, "serkit_version": {"type": "string"},
                "can_adapt": {"type": "boolean", "description": "It can answer a recording as one voice "
                              "(same_speaker)"},
                "can_tell_voices": {"type": "boolean", "description": "It can tell a recording's voices "
                                    "apart (speakers=voice): it can adapt, and the server has SciPy"},
                "metrics": {"type": "object", "description": "As stored in the bundle (held-out test metrics)"}}},
            "Limits": {"type": "object", "properties": {
                "max_upload_bytes": {"type": "integer"}, "max_seconds": {"type": "number"},
                "min_seconds": {"type": "number"}}},
            "Error": {"type": "object", "required": ["status", "error", "message"], "properties": {
                "status": {"type": "integer"},
                "error": {"type": "string", "description": "Machine-readable code: empty, no_file, "
                          "bad_request, undecodable, not_audio, unsupported_format, too_large, too_long, "
                          "out_of_range, cannot_adapt, cannot_tell_voices, unknown_model, not_found, method_not_allowed, non_finite_scores, "
                          "internal_error"},
                "message": {"type": "string", "description": "What went wrong, in words"}}},
        }},
    }

"""The web service: one page and a JSON API over one or more model bundles.

    from serkit.web import create_app
    app = create_app({"SERKIT_MODELS": {"cnn": "runs/cnn/bundle"}})

Every bundle is loaded once, when the app is built (so once per server process), never per
request. Configuration keys (all optional):

``SERKIT_MODELS``         mapping name -> bundle folder (or an already loaded Predictor);
                          default: the shipped models, ``default`` and ``fast``
``SERKIT_DEFAULT_MODEL``  the name used when a request names none (default: the first)
``MAX_CONTENT_LENGTH``    largest request body in bytes (default 20 MiB) -> 413
``SERKIT_MAX_SECONDS``    longest audio accepted (default 120 s) -> 413
``SERKIT_TIMELINE_VAD``   speech detector when a request names none: ``auto`` (silero when
                          onnxruntime is installed, else energy), ``silero``, ``energy`` or
                          ``none`` (whole clip); default None: the model's own (its bundle's)
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser

from serkit.config import VADS
from serkit.inference import SHIPPED, Predictor, load_model, shipped_model_path
from serkit.vad import make_vad
from serkit.web import api, page
from serkit.web.service import ServedModel, Service, service  # noqa: F401  (re-exported)
from serkit.web.uploads import ApiError, Limits

DEFAULTS: dict[str, Any] = {
    "SERKIT_MODELS": None,
    "SERKIT_DEFAULT_MODEL": None,
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,
    "SERKIT_MAX_SECONDS": Limits.max_seconds,
    "SERKIT_TIMELINE_VAD": None,
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

log = logging.getLogger("serkit.web")


class StrictJSONProvider(DefaultJSONProvider):
    """Responses keep the model's label order, and a NaN or infinity is an error (a 500 with a JSON
    body) instead of ``NaN`` in the body, which is not JSON."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


class MemoryRequest(Request):
    """Multipart file parts stay in memory (the body is capped by MAX_CONTENT_LENGTH), so an
    upload never touches the disk, not even as an anonymous temporary file."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()

    def make_form_data_parser(self) -> FormDataParser:
        """A parser that raises ValueError on a malformed multipart body (werkzeug's default
        answers it with an empty form, which would read as "no file")."""
        parser = super().make_form_data_parser()
        parser.silent = False
        return parser


def load_models(spec: Mapping[str, str | os.PathLike | Predictor] | None) -> dict[str, ServedModel]:
    """Load every bundle of ``spec`` (name -> folder or Predictor), each once and warmed up by
    :func:`serkit.load_model`; the shipped models when None."""
    if spec is None:   # the shipped models, the default first
        spec = {name: shipped_model_path(name) for name in SHIPPED if (shipped_model_path(name) / "config.json").is_file()}
    if not spec:
        raise ValueError("no models to serve; give at least one bundle")
    models = {}
    for name, source in spec.items():
        if not name or "/" in name:
            raise ValueError(f"bad model name {name!r}: use letters, digits, '-', '_' or '.'")
        if isinstance(source, Predictor):
            models[name] = ServedModel(name, f"<{source.name}>", source)
        else:
            models[name] = ServedModel(name, str(Path(source)), load_model(source))
    return models


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: load the models, register the page and API blueprints and the error handlers."""

    app = Flask(__name__)
    app.request_class = MemoryRequest
    app.config.from_mapping(DEFAULTS)
    if config:
        app.config.from_mapping(config)
    app.json = StrictJSONProvider(app)
    models = load_models(app.config["SERKIT_MODELS"])
    default = app.config["SERKIT_DEFAULT_MODEL"] or next(iter(models))
    if default not in models:
        raise ValueError(f"default model {default!r} is not among the served models ({', '.join(models)})")
    limits = Limits(max_seconds=float(app.config["SERKIT_MAX_SECONDS"]))
    app.extensions["serkit"] = Service(models, default, limits)
    if app.config["SERKIT_TIMELINE_VAD"] not in (None, *VADS):
        raise ValueError(f"SERKIT_TIMELINE_VAD {app.config['SERKIT_TIMELINE_VAD']!r}: use one of {', '.join(VADS)}")
    if app.config["SERKIT_TIMELINE_VAD"]:
        make_vad(app.config["SERKIT_TIMELINE_VAD"])   # a missing onnxruntime fails at start-up

    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/") or request.path == "/healthz" or exc.code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            message = (f"The upload is larger than this server's {limit / 1048576:g} MiB limit."
                       if exc.code == 413 and limit else exc.description)
            code = "too_large" if exc.code == 413 else (exc.name or "error").lower().replace(" ", "_")
            return jsonify({"status": exc.code, "error": code, "message": message}), exc.code
        return exc

    @app.errorhandler(Exception)
    def server_error(exc: Exception):   # a bug on our side, never a client's input: log it
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"status": 500, "error": "internal_error",
                        "message": "The server failed; this is a bug, please report it."}), 500

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Permissions-Policy", "microphone=(self)")
        return response

    return app


__all__ = ["create_app", "DEFAULTS", "ApiError", "Limits", "ServedModel", "Service"]

"""``serkit serve``: the app on waitress, a production WSGI server (never Flask's debug server)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_name(folder: Path) -> str:
    """A served name from a bundle folder: its own name, or its run's name for ``<run>/bundle``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "bundle" and folder.parent.name else folder.name


def parse_model_specs(specs: Sequence[str]) -> dict[str, Path] | None:
    """``PATH`` or ``NAME=PATH`` items -> {name: folder}; None (the default model) when empty."""
    if not specs:
        return None
    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not NAME.match(name):   # a plain path (which may itself contain '=')
            name, path = "", spec
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"--model {spec}: no bundle folder at {folder}")
        name = name or model_name(folder)
        if not NAME.match(name):
            raise ValueError(f"--model {spec}: {name!r} is not a usable name; give one as NAME=PATH")
        if name in models:
            raise ValueError(f"--model {spec}: two models are called {name!r}; name them with NAME=PATH")
        models[name] = folder
    return models


def serve(specs: Sequence[str] = (), host: str = "127.0.0.1", port: int = 5000, threads: int = 4,
          max_upload_mb: float = 20.0, max_seconds: float = 120.0, torch_threads: int | None = 1,
          vad: str = "auto", announce: Any = print, connection_limit: int | None = None,
          channel_timeout: int | None = None, cleanup_interval: int | None = None,
          request_timeout: int | None = None) -> None:
    """Load the models once, then serve until interrupted.

    ``torch_threads`` is per prediction: with several request threads, one torch thread each uses
    the cores better than every request fighting for all of them (None keeps torch's default).
    The connection limits default to :data:`serkit.config.SERVE_DEFAULTS`. A port that cannot be
    listened on raises OSError before the "serving" line is announced.
    """
    import logging

    import torch
    from waitress import create_server

    from serkit.config import SERVE_DEFAULTS
    from serkit.web import create_app

    limits = {"connection_limit": connection_limit, "channel_timeout": channel_timeout,
              "cleanup_interval": cleanup_interval, "request_timeout": request_timeout}
    limits = {k: SERVE_DEFAULTS[k] if v is None else v for k, v in limits.items()}
    if threads < 1:
        raise ValueError(f"--threads {threads}: give at least 1")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: give 0 to 65535")
    for name, value in limits.items():
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value}: give at least 1")
    if max_upload_mb <= 0 or max_seconds <= 0:
        raise ValueError(f"--max-upload-mb {max_upload_mb} and --max-seconds {max_seconds} must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)   # busy threads under load are normal
    if torch_threads:
        torch.set_num_threads(torch_threads)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    app = create_app({"SERKIT_MODELS": parse_model_specs(specs), "MAX_CONTENT_LENGTH": max_bytes,
                      "SERKIT_MAX_SECONDS": max_seconds, "SERKIT_TIMELINE_VAD": vad})
    names = ", ".join(app.extensions["serkit"].models)
    try:
        # waitress refuses bodies a little over the app's limit itself, before buffering them.
        server = create_server(app, host=host, port=port, threads=threads, ident="serkit",
                               max_request_body_size=max_bytes + 65536, clear_untrusted_proxy_headers=True,
                               connection_limit=limits["connection_limit"],
                               channel_timeout=limits["channel_timeout"],
                               cleanup_interval=limits["cleanup_interval"])
    except OSError as exc:   # in use, not this machine's address, no permission for a low port
        raise OSError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
                      "is another server using it? Pick another --port") from None
    cut_slow_requests(server, limits["request_timeout"])
    shown = f"[{host}]" if ":" in host else host
    bound = getattr(server, "effective_port", port)
    announce(f"serving {names} on http://{shown}:{bound}/  (waitress, {threads} threads, "
             f"torch {torch.get_num_threads()} threads, at most {limits['connection_limit']} connections; "
             "Ctrl-C stops)")
    try:
        server.run()
    finally:
        server.close()


def cut_slow_requests(server: Any, timeout: float) -> None:
    """Make waitress drop a connection whose request has not arrived whole ``timeout`` seconds
    after its first bytes (a client trickling its headers or body, "slowloris"). waitress only
    closes connections that send nothing for ``channel_timeout`` seconds; this adds the deadline
    to its periodic maintenance (every ``cleanup_interval`` seconds)."""
    from waitress.server import BaseWSGIServer

    servers = {id(s): s for s in [server, *getattr(server, "map", {}).values()] if isinstance(s, BaseWSGIServer)}
    for one in servers.values():
        idle_check = one.maintenance

        def maintenance(now: float, one: Any = one, idle_check: Any = idle_check) -> None:
            idle_check(now)
            for channel in list(one.active_channels.values()):
                partial = channel.request
                if partial is None or channel.requests:
                    continue
                first_seen = getattr(partial, "serkit_first_seen", None)
                if first_seen is None:
                    partial.serkit_first_seen = now
                elif now - first_seen > timeout:
                    channel.will_close = True

        one.maintenance = maintenance

"""``serkit serve``: the app on waitress, a production WSGI server (never Flask's debug server)."""
from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from serkit.config import ServeSettings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
access_log = logging.getLogger("serkit.access")


class AccessLog:
    """WSGI middleware: one log line per request once its response is sent, e.g.
    ``127.0.0.1 "POST /api/predict" 200 412 B 83.4 ms`` (INFO; 4xx WARNING, 5xx ERROR)."""

    def __init__(self, app: Callable, logger: logging.Logger = access_log):
        self.app, self.log = app, logger

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["-"]

        def start(line: str, headers: list, exc_info: Any = None) -> Callable:
            status[0] = line.split(" ", 1)[0]
            return start_response(line, headers, exc_info)

        def done(size: int) -> None:
            code = int(status[0]) if status[0].isdigit() else 500
            query = environ.get("QUERY_STRING")
            target = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
            level = logging.ERROR if code >= 500 else logging.WARNING if code >= 400 else logging.INFO
            self.log.log(level, '%s "%s %s" %s %d B %.1f ms', environ.get("REMOTE_ADDR", "-"),
                         environ.get("REQUEST_METHOD", "-"), target, status[0], size,
                         (time.perf_counter() - started) * 1000)

        return _CountedBody(self.app(environ, start), done)


class _CountedBody:
    """The response body, passed through; counts its bytes and reports them when closed."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None]):
        self.body, self.done, self.size = body, done, 0

    def __iter__(self):
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.done(self.size)


def parse_model_specs(specs: Sequence[str]) -> dict[str, Path] | None:
    """``PATH`` or ``NAME=PATH`` items -> {name: folder}; None (the default model) when empty."""
    if not specs:
        return None
    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not NAME.match(name):   # a plain path (which may itself contain '=')
            name, path = "", spec
        from serkit.inference import SHIPPED, model_name, resolve_model
        folder = resolve_model(path)                 # a shipped model by name: default, fast
        if not folder.is_dir():
            raise FileNotFoundError(f"--model {spec}: no bundle folder at {folder} (give a bundle folder, "
                                    f"or a shipped model: {', '.join(SHIPPED)})")
        name = name or model_name(folder)
        if not NAME.match(name):
            raise ValueError(f"--model {spec}: {name!r} is not a usable name; give one as NAME=PATH")
        if name in models:
            raise ValueError(f"--model {spec}: two models are called {name!r}; name them with NAME=PATH")
        models[name] = folder
    return models


def run_until_signalled(server: Any) -> str | None:
    """Run a waitress ``server`` until SIGTERM or SIGINT; the name of the signal that stopped it.

    Both signals raise SystemExit in the main thread, which waitress's loop catches to close its
    sockets and threads, so ``serkit serve`` returns 0. SIGTERM needs this: as PID 1 in a
    container a process that leaves it at its default is not stopped by it, and ``docker stop``
    waits 10 s, then kills it. Signal handlers can only be set in the main thread; elsewhere the
    server runs as it is (None).
    """
    if threading.current_thread() is not threading.main_thread():
        server.run()
        return None
    stopped: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopped.append(signal.Signals(signum).name)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stopped[0] if stopped else None


def serve(settings: ServeSettings | None = None, *, announce: Any = print) -> str | None:
    """Load the models once, then serve until Ctrl-C or SIGTERM; the name of the signal that stopped it.

    ``settings`` (:class:`serkit.config.ServeSettings`, checked when built) name the models, the
    address, the threads and the connection limits. ``torch_threads`` is per prediction: with
    several request threads, one torch thread each uses the cores better than every request
    fighting for all of them (None keeps torch's default). Unless ``quiet``, every request is
    logged (:class:`AccessLog`) to stderr. A port that cannot be listened on raises OSError
    before the "serving" line is announced.
    """
    from waitress import create_server

    from serkit.web import create_app

    s = settings or ServeSettings()
    host, port, threads = s.host, s.port, s.threads
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)   # busy threads under load are normal
    max_bytes = int(s.max_upload_mb * 1024 * 1024)
    app = create_app({"SERKIT_MODELS": parse_model_specs(s.models or ()), "MAX_CONTENT_LENGTH": max_bytes,
                      "SERKIT_MAX_SECONDS": s.max_seconds, "SERKIT_TIMELINE_VAD": s.vad})
    torch = sys.modules.get("torch")   # imported only by models that need it (the shipped ones do not)
    if s.torch_threads and torch is not None:
        torch.set_num_threads(s.torch_threads)
    if not s.quiet:
        app.wsgi_app = AccessLog(app.wsgi_app)
    names = ", ".join(app.extensions["serkit"].models)
    try:
        # waitress refuses bodies a little over the app's limit itself, before buffering them.
        server = create_server(app, host=host, port=port, threads=threads, ident="serkit",
                               max_request_body_size=max_bytes + 65536, clear_untrusted_proxy_headers=True,
                               connection_limit=s.connection_limit, channel_timeout=s.channel_timeout,
                               cleanup_interval=s.cleanup_interval)
    except OSError as exc:   # in use, not this machine's address, no permission for a low port
        raise OSError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
                      "is another server using it? Pick another --port") from None
    cut_slow_requests(server, s.request_timeout)
    shown = f"[{host}]" if ":" in host else host
    bound = getattr(server, "effective_port", port)
    announce(f"serving {names} on http://{shown}:{bound}/  (waitress, {threads} threads, "
             + (f"torch {torch.get_num_threads()} threads, " if torch is not None else "")
             + f"at most {s.connection_limit} connections; "
             + f"{'no access log' if s.quiet else 'requests logged'}; Ctrl-C stops)")
    server.print_listen("Serving on http://{}:{}")   # as waitress.serve logs it
    stopped = run_until_signalled(server)
    announce(f"stopped ({stopped})" if stopped else "stopped")
    return stopped


def exit_at_once(code: int = 0) -> None:
    """End the process now, after a clean stop: logs and output flushed, without Python's teardown.

    The server has closed its sockets and threads and wrote no files. What is left is unloading
    torch and the rest, which takes a second or more on a busy machine: that second would make
    ``docker stop`` slow for nothing. Only the command line calls this, never library code.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


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

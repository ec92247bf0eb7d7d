"""A live ``serkit serve`` for tests that need a real server: a tiny bundle, 127.0.0.1 only, a
free port, its log in a file (shared by the browser and signal tests)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_web import make_bundle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, more: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str, Path]:
    """``serkit serve`` exactly as a user starts it, with the tiny bundle first (the page's default)
    and the ``more`` models (``NAME=PATH``); returns the process, its base URL (ending in ``/``)
    once ``/healthz`` answers, and its log file."""
    bundle = make_bundle(folder / "tiny")
    port = free_port()
    log_path = folder / "server.log"
    extra = [arg for spec in more for arg in ("--model", spec)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "serkit", "serve", "--model", str(bundle), *extra,
                                 "--host", "127.0.0.1", "--port", str(port), "--threads", "2",
                                 "--vad", "energy"],    # tones are not speech to silero
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"serkit serve exited early: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as r:
                if r.status == 200:
                    return proc, url, log_path
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("serkit serve did not answer /healthz")
            time.sleep(0.2)

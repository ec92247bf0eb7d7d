"""The Makefile's install: PyTorch's CPU index only where it answers and only for extras that bring
torch, the test extras only for tests.

A stand-in ``pip`` in a fake venv records its arguments, so nothing is installed; the "index" is
an HTTP server on 127.0.0.1, and the unreachable one a closed local port.
"""
from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


@pytest.fixture
def venv(tmp_path) -> Path:
    bin_ = tmp_path / "venv" / "bin"
    bin_.mkdir(parents=True)
    pip = bin_ / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "pip.log"}"\n')
    pip.chmod(0o755)
    return tmp_path / "venv"


def make(venv: Path, target: str, *assignments: str) -> tuple[list[str], str]:
    """Run ``make target`` with the fake venv; the pip calls it made and its stderr."""
    r = subprocess.run(["make", "-C", str(ROOT), target, f"VENV={venv}", *assignments],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = venv.parent / "pip.log"
    return (log.read_text().splitlines() if log.exists() else []), r.stderr


class EmptyIndex(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def index_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EmptyIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_reachable_cpu_index_is_added_for_the_extras_that_bring_torch(venv, index_url):
    calls, _ = make(venv, "install-test", f"TORCH_INDEX={index_url}")
    assert calls == [f"install -q -c constraints.txt --extra-index-url {index_url} -e .[dev]"]
    calls, err = make(venv, "install", f"TORCH_INDEX={index_url}", "RUN_EXTRAS=eval,train")
    assert calls[-1] == f"install -q -c constraints.txt --extra-index-url {index_url} -e .[eval,train]"


def test_an_install_without_torch_neither_probes_nor_adds_the_index(venv):
    url = closed_port_url()                  # a probe would take its time and print a note
    calls, err = make(venv, "install", f"TORCH_INDEX={url}")
    assert calls == ["install -q -c constraints.txt -e .[eval]"] and "cannot be reached" not in err


def test_unreachable_index_is_left_out_with_a_note(venv):
    url = closed_port_url()
    calls, err = make(venv, "install-test", f"TORCH_INDEX={url}")
    assert calls == ["install -q -c constraints.txt -e .[dev]"]
    assert f"{url} cannot be reached" in err


def test_empty_torch_index_skips_the_check(venv):
    calls, err = make(venv, "install", "TORCH_INDEX=")
    assert calls == ["install -q -c constraints.txt -e .[eval]"] and "cannot be reached" not in err


def test_run_installs_no_dev_extras_and_test_adds_them(venv):
    calls, _ = make(venv, "install", "TORCH_INDEX=")
    assert "[dev]" not in calls[0]
    calls, _ = make(venv, "install-test", "TORCH_INDEX=")
    assert calls[-1].endswith("-e .[dev]")

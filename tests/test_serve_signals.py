"""``serkit serve`` stops cleanly on SIGTERM (what ``docker stop``, systemd and ``kill`` send).

As PID 1 in a container a process that leaves SIGTERM at its default is not killed by it, so
``docker stop`` used to wait 10 s and then SIGKILL the server (exit 137). The server now treats
SIGTERM like Ctrl-C: waitress closes its sockets and the command returns 0.
"""
from __future__ import annotations

import signal
import threading
import urllib.request

import pytest

from serkit.web import serve as serve_mod
from live_server import start_server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_exits_0_on_sigterm_and_sigint(tmp_path, sig):
    proc, url, log_path = start_server(tmp_path)
    try:
        proc.send_signal(sig)
        code = proc.wait(timeout=30)     # a hang guard, not a timing assertion
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert code == 0, log
    assert f"stopped ({sig.name})" in log
    assert "Traceback" not in log
    with pytest.raises(OSError):         # the port is closed
        urllib.request.urlopen(url, timeout=2)


def test_sigterm_handler_is_installed_only_while_serving(monkeypatch):
    """In-process: the handler turns SIGTERM into the exit waitress handles, then is removed."""
    seen = {}

    class FakeServer:
        def run(self):
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            with pytest.raises(SystemExit):
                seen["handler"](signal.SIGTERM, None)

    before = signal.getsignal(signal.SIGTERM)
    stopped = serve_mod.run_until_signalled(FakeServer())
    assert callable(seen["handler"]) and seen["handler"] is not before
    assert stopped == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_no_handler_outside_the_main_thread():
    """signal.signal only works in the main thread; a server run elsewhere (tests) still runs."""
    ran = []

    class FakeServer:
        def run(self):
            ran.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=lambda: ran.append(serve_mod.run_until_signalled(FakeServer())))
    t.start()
    t.join(timeout=10)
    assert ran == [before, None]


@pytest.mark.parametrize("stopped, exits", [("SIGTERM", True), (None, False)])
def test_serve_command_skips_the_teardown_only_after_a_signal(monkeypatch, stopped, exits):
    """After a signal the command ends the process at once (torch's unloading would slow
    ``docker stop``); a server that returned by itself goes back through main() as usual."""
    from serkit.cli import main

    calls = []
    monkeypatch.setattr(serve_mod, "serve", lambda settings, **kw: stopped)
    monkeypatch.setattr(serve_mod, "exit_at_once", lambda code=0: calls.append(code))
    assert main(["serve", "--port", "8123"]) == 0
    assert calls == ([0] if exits else [])

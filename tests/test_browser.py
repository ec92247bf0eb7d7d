"""The page in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

A live ``serkit serve`` (waitress) runs on 127.0.0.1 at a free port with a tiny bundle. The
browser uploads a clip, drops one, records one from Chromium's fake microphone, and shows an
error for a text file; the tests read the emotion, the probability bars and the timeline from
the page. Screenshots are kept as artifacts in ``$SERKIT_SCREENSHOT_DIR`` (created if needed)
or in pytest's tmp dir. Skipped when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = Path(os.environ.get("SERKIT_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from test_web import LABELS, audio_bytes, make_bundle, speech_and_pause, wav_bytes  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 60_000
EXPECTED_4XX = "the server responded with a status of 4"   # Chromium logs a JSON error reply too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``serkit serve`` exactly as a user starts it, on loopback only."""
    folder = tmp_path_factory.mktemp("browser")
    bundle = make_bundle(folder / "tiny")
    port = free_port()
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "serkit", "serve", "--model", str(bundle),
                             "--host", "127.0.0.1", "--port", str(port), "--threads", "2",
                             "--vad", "energy"],    # tones are not speech to silero
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"serkit serve exited: {(folder / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if time.time() > deadline:
                proc.terminate()
                pytest.fail("serkit serve did not answer /healthz")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()
    assert "Traceback" not in (folder / "server.log").read_text()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("SERKIT_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, permissions=["microphone"],
                                  reduced_motion="reduce")    # bars drawn at once, no transition
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" and EXPECTED_4XX not in m.text else None)
    page.goto(server)
    yield page
    context.close()
    assert problems == []       # no script errors, no CSP violations


def read_result(page) -> dict:
    page.wait_for_selector("#result:not([hidden])")
    bars = page.locator("#bars li")
    return {
        "emotion": page.text_content("#emotion"),
        "bars": [(bars.nth(i).locator(".bar-label").text_content(),
                  bars.nth(i).locator(".bar-value").inner_text(),
                  bars.nth(i).locator(".bar-fill").bounding_box()["width"]) for i in range(bars.count())],
        "model": page.inner_text("#meta-model"),
        "cells": page.locator("#timeline li").count(),
        "spans": page.evaluate("""() => [...document.querySelectorAll('#timeline li')].map((li) => {
            const strip = li.parentElement.getBoundingClientRect(), box = li.getBoundingClientRect();
            return [(box.left - strip.left) / strip.width, (box.right - strip.left) / strip.width]; })"""),
    }


def test_upload_shows_emotion_bars_and_timeline(page, tmp_path, artifacts):
    assert page.title().startswith("serkit")
    assert page.locator("#model option").all_inner_texts() == ["tiny"]
    assert "angry, happy, sad" in page.inner_text("#model-hint")
    clip = tmp_path / "long clip.wav"
    wave, truth = speech_and_pause()             # 8 s: sound 0-2 s, a pause, sound 4-8 s
    clip.write_bytes(wav_bytes(wave))
    page.set_input_files("#file", str(clip))
    r = read_result(page)
    page.screenshot(path=str(artifacts / "web-result.png"), full_page=True)
    assert r["emotion"] in LABELS and r["model"] == "tiny"
    assert [b[0] for b in r["bars"]] == LABELS
    assert all(b[1].endswith("%") and b[2] > 0 for b in r["bars"])
    widths = {label: width for label, _, width in r["bars"]}
    assert widths[r["emotion"]] == max(widths.values())          # the top class has the longest bar
    assert page.is_visible("#timeline-block") and "Predicted" in page.inner_text("#status")
    # one cell per speech segment, placed at its time: the pause is a gap in the strip
    assert r["cells"] == 2
    for (left, right), (start, end) in zip(r["spans"], truth):
        assert abs(left - start / 8) < 0.03 and abs(right - end / 8) < 0.03
    assert "2 speech segments" in page.inner_text("#timeline-hint") and "energy VAD" in page.inner_text("#timeline-hint")
    # fixed windows instead: 3 s cells tiling the clip, silence included
    page.select_option("#vad", "none")
    page.evaluate("document.getElementById('result').hidden = true")
    page.set_input_files("#file", [])
    page.set_input_files("#file", str(clip))
    r = read_result(page)
    assert r["cells"] == 3 and "3 windows of 3" in page.inner_text("#timeline-hint")
    assert [round(8 * x) for span in r["spans"] for x in span] == [0, 3, 3, 6, 6, 8]


def test_drag_and_drop(page):
    data = base64.b64encode(audio_bytes(1.0, sr=44100, channels=2)).decode()
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.wav", { type: "audio/wav" }));
        const drop = document.getElementById("drop");
        for (const type of ["dragenter", "dragover", "drop"])
            drop.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }""", data)
    r = read_result(page)
    assert r["emotion"] in LABELS and len(r["bars"]) == 3 and r["cells"] == 0
    assert page.is_hidden("#timeline-block")


def test_recording_is_encoded_to_wav_in_the_page(page):
    page.click("#record")
    page.wait_for_selector("#record[aria-pressed=true]")
    page.wait_for_timeout(2500)                      # Chromium's fake microphone beeps about once a second
    page.click("#record")
    r = read_result(page)
    assert r["emotion"] in LABELS
    assert page.inner_text("#clip-name") == "recording.wav"
    assert page.get_attribute("#record", "aria-pressed") == "false"


def test_errors_are_shown_in_words(page, tmp_path, artifacts):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file with an audio name\n" * 50)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an audio file" in page.inner_text("#error")
    assert page.get_attribute("#error", "role") == "alert" and page.is_hidden("#result")
    page.screenshot(path=str(artifacts / "web-error.png"), full_page=True)


def test_keyboard_reaches_every_control_in_order(page):
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert order[:5] == ["skip", "model", "vad", "file", "record"]


def test_small_screen_layout(browser, server, tmp_path, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    clip = tmp_path / "c.flac"
    sf.write(str(clip), np.sin(np.arange(16000 * 5) / 7).astype(np.float32) * 0.3, 16000)
    page.set_input_files("#file", str(clip))
    read_result(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390     # no sideways scrolling
    page.screenshot(path=str(artifacts / "web-mobile.png"), full_page=True)
    context.close()

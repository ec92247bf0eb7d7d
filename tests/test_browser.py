"""The page in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

A live ``serkit serve`` (waitress) runs on 127.0.0.1 at a free port with a tiny bundle. The
browser uploads a clip, drops one, records one from Chromium's fake microphone, and shows an
error for a text file; the tests read the emotion, the probability bars and the timeline from
the page. Screenshots are kept as artifacts in ``$SERKIT_SCREENSHOT_DIR`` (created if needed)
or in pytest's tmp dir. Skipped when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = Path(os.environ.get("SERKIT_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from live_server import start_server  # noqa: E402
from test_web import LABELS, audio_bytes, speech_and_pause, wav_bytes  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 60_000
EXPECTED_4XX = "the server responded with a status of 4"   # Chromium logs a JSON error reply too


SERVER_LOG: dict[str, Path] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``serkit serve`` exactly as a user starts it, on loopback only (its log: SERVER_LOG["path"])."""
    folder = tmp_path_factory.mktemp("browser")
    proc, url, SERVER_LOG["path"] = start_server(folder)
    yield url
    proc.terminate()
    proc.wait(10)
    assert "Traceback" not in SERVER_LOG["path"].read_text()


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
    page.wait_for_selector("#result:not([hidden]):not(.stale)")
    bars = page.locator("#bars li")
    return {
        "emotion": page.text_content("#emotion"),
        "bars": [(bars.nth(i).locator(".bar-label").text_content(),
                  bars.nth(i).locator(".bar-value").inner_text(),
                  bars.nth(i).locator(".bar-fill").bounding_box()["width"]) for i in range(bars.count())],
        "model": page.inner_text("#meta-model"),
        "cells": page.locator("#timeline .cell").count(),
        "spans": page.evaluate("""() => [...document.querySelectorAll('#timeline .cell')].map((li) => {
            const strip = li.parentElement.getBoundingClientRect(), box = li.getBoundingClientRect();
            return [(box.left - strip.left) / strip.width, (box.right - strip.left) / strip.width]; })"""),
    }


def upload(page, path: Path) -> dict:
    page.set_input_files("#file", str(path))
    return read_result(page)


def long_recording(seconds: int = 102, sr: int = 16000) -> np.ndarray:
    """Bursts of 4 s of sound (chirps and noise in turn) with 2 s pauses between them."""
    rng = np.random.default_rng(5)
    t = np.arange(4 * sr) / sr
    parts = []
    for k in range(seconds // 6):
        sound = (0.3 * np.sin(2 * np.pi * (150 + 60 * k + 80 * t) * t) if k % 2 == 0
                 else 0.2 * rng.standard_normal(len(t)))
        parts += [sound, 0.001 * rng.standard_normal(2 * sr)]
    return np.concatenate(parts).astype(np.float32)[: seconds * sr]


def in_view(page, selector: str) -> bool:
    return page.evaluate("""(sel) => { const b = document.querySelector(sel).getBoundingClientRect();
        return b.top > -2 && b.top < window.innerHeight; }""", selector)   # -2: sub-pixel scrolling


def test_upload_shows_emotion_bars_and_timeline(page, tmp_path, artifacts):
    assert page.title().startswith("serkit")
    assert page.locator("#model option").all_inner_texts() == ["tiny"]
    hint = page.inner_text("#model-hint")
    assert "angry, happy, sad" in hint
    # the bundle's held-out figures (test_web.make_bundle), and what an "uncertain" is worth
    assert "On 10 clips of speakers it never heard, it was right 50.0% of the time: 66.7% of its sure " \
           "answers, 25.0% of those marked uncertain." in hint
    words = page.inner_text("section[aria-labelledby=input-heading]")
    assert "window" not in words and "VAD" not in words                  # plain words, no jargon
    clip = tmp_path / "long clip.wav"
    wave, truth = speech_and_pause()             # 8 s: sound 0-2 s, a pause, sound 4-8 s
    clip.write_bytes(wav_bytes(wave))
    r = upload(page, clip)
    page.screenshot(path=str(artifacts / "desktop-result.png"), full_page=True)
    assert r["emotion"] in LABELS and r["model"] == "tiny"
    assert [b[0] for b in r["bars"]] == LABELS
    assert all(b[1].endswith("%") and b[2] > 0 for b in r["bars"])
    widths = {label: width for label, _, width in r["bars"]}
    assert widths[r["emotion"]] == max(widths.values())          # the top class has the longest bar
    assert page.is_visible("#timeline-block") and "Predicted" in page.inner_text("#status")
    assert page.evaluate("document.activeElement.id") == "result"
    # one cell per speech segment, placed at its time: the pause is a gap in the strip
    assert r["cells"] == 2
    for (left, right), (start, end) in zip(r["spans"], truth):
        assert abs(left - start / 8) < 0.03 and abs(right - end / 8) < 0.03
    hint = page.inner_text("#timeline-hint")
    assert "2 stretches of speech" in hint and "found by loudness" in hint and "VAD" not in hint
    # the segment list under the strip: time span, emotion and confidence of each
    rows = page.locator("#segments .segment").all_inner_texts()
    assert len(rows) == 2 and all(" s" in row and "%" in row for row in rows)
    assert rows[0].split()[0].startswith("0.0–2.")
    # "Equal pieces" instead: the clip on show is analysed again at once, no new upload
    page.focus("#vad")
    page.select_option("#vad", "none")
    page.wait_for_function("() => document.getElementById('timeline-hint').textContent.includes('3 pieces of 3')")
    r = read_result(page)
    assert r["cells"] == 3
    assert [round(8 * x) for span in r["spans"] for x in span] == [0, 3, 3, 6, 6, 8]
    assert page.evaluate("document.activeElement.id") == "vad"     # the focus stays on the changed setting


def test_the_page_and_the_png_plot_share_one_palette(page, tmp_path):
    from serkit.display import EMOTION_COLORS

    clip = tmp_path / "c.wav"
    clip.write_bytes(audio_bytes(2.0))
    upload(page, clip)
    fills = page.evaluate("""() => [...document.querySelectorAll('#bars .bar-fill')]
        .map((f) => getComputedStyle(f).backgroundColor)""")
    rgb = [tuple(int(EMOTION_COLORS[label][i:i + 2], 16) for i in (1, 3, 5)) for label in LABELS]
    assert fills == [f"rgb({r}, {g}, {b})" for r, g, b in rgb]


def test_old_result_is_dimmed_with_progress_while_a_new_clip_is_analysed(page, tmp_path, artifacts):
    clip = tmp_path / "first.wav"
    clip.write_bytes(audio_bytes(2.0))
    upload(page, clip)
    held = []
    page.route("**/api/predict", lambda route: held.append(route))     # answer later
    second = tmp_path / "second.wav"
    second.write_bytes(audio_bytes(2.5, seed=1))
    page.set_input_files("#file", str(second))
    page.wait_for_function("() => document.getElementById('result').classList.contains('stale')")
    assert page.is_visible("#progress") and "Analysing second.wav" in page.inner_text("#status")
    assert float(page.evaluate("getComputedStyle(document.getElementById('result')).opacity")) < 0.5
    page.screenshot(path=str(artifacts / "desktop-analysing.png"))
    # the status line is announced once; the seconds tick apart from it, hidden from screen readers
    said = page.inner_text("#status")
    page.wait_for_function("() => /^[1-9][0-9]* s$/.test(document.getElementById('elapsed').textContent)")
    assert page.inner_text("#status") == said and page.get_attribute("#elapsed", "aria-hidden") == "true"
    assert page.evaluate("!document.getElementById('status').contains(document.getElementById('elapsed'))")
    assert page.is_visible("#cancel")
    held[0].continue_()
    page.unroute("**/api/predict")
    read_result(page)
    assert page.is_hidden("#progress") and page.inner_text("#meta-duration") == "2.500 s"
    assert page.is_hidden("#cancel") and page.inner_text("#elapsed") == ""


def test_a_segment_plays_when_its_row_or_cell_is_pressed(page, tmp_path):
    clip = tmp_path / "two parts.wav"
    wave, truth = speech_and_pause()
    clip.write_bytes(wav_bytes(wave))
    upload(page, clip)
    page.click("#segments li:nth-child(2) .segment")
    page.wait_for_function("() => !document.getElementById('player').paused")
    now = page.evaluate("document.getElementById('player').currentTime")
    assert truth[1][0] - 0.2 <= now < truth[1][1]
    assert page.get_attribute("#segments li:nth-child(2) .segment", "aria-current") == "true"
    assert "is-playing" in page.get_attribute("#timeline .cell:nth-child(2)", "class")
    # the first segment plays from its start and stops at its end
    page.click("#timeline .cell:nth-child(1)")
    page.wait_for_function("() => document.getElementById('player').paused", timeout=10_000)
    end = page.evaluate("document.getElementById('player').currentTime")
    seg_end = float(page.locator("#segments .segment-time").first.inner_text().split("–")[1].split()[0])
    assert seg_end - 0.05 <= end <= seg_end + 0.6


def test_timeline_by_keyboard_with_a_visible_readout_and_ring(page, tmp_path, artifacts):
    clip = tmp_path / "long.wav"
    clip.write_bytes(wav_bytes(long_recording()))
    r = upload(page, clip)
    assert r["cells"] == 17
    page.focus("#timeline .cell:nth-child(1)")
    first = page.inner_text("#readout")
    assert first.startswith("0:00.0–0:0") and "%" in first
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.index") == "1"
    assert page.inner_text("#readout").startswith("0:0") and page.inner_text("#readout") != first
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.dataset.index") == "16"
    # the ring is drawn outside the cell and nothing up the tree cuts it off
    ring = page.evaluate("""() => { const c = document.activeElement, s = getComputedStyle(c);
        let clipped = false;
        for (let n = c.parentElement; n; n = n.parentElement)
            if (getComputedStyle(n).overflow !== 'visible') clipped = n.tagName !== 'HTML' && n.tagName !== 'BODY';
        return [s.outlineStyle, parseFloat(s.outlineWidth), clipped]; }""")
    assert ring == ["solid", 3.0, False]
    page.locator("#timeline-block").screenshot(path=str(artifacts / "desktop-timeline-focus.png"))
    # ticks at round times, m:ss past a minute, and their labels never overlap
    ticks = page.evaluate("""() => [...document.querySelectorAll('#ticks .tick')].map((t) => {
        const b = t.getBoundingClientRect(); return [t.textContent, b.left, b.right]; })""")
    assert len(ticks) >= 5 and ticks[0][0] == "0:00" and ticks[1][0] in ("0:10", "0:15", "0:20", "0:30")
    assert all(a[2] <= b[1] for a, b in zip(ticks, ticks[1:]))
    # confidence is the cell's strength: opacity from 0.35 at chance to 1 at certainty
    alphas = page.evaluate("""() => [...document.querySelectorAll('#timeline .cell')].map((c) =>
        parseFloat(getComputedStyle(c).backgroundColor.split(',')[3]))""")
    confidences = [float(t.split()[-1].rstrip("%")) / 100
                   for t in page.locator("#segments .segment").all_inner_texts()]
    for alpha, conf in zip(alphas, confidences):
        assert alpha == pytest.approx(0.35 + 0.65 * min(max((conf - 1 / 3) / (2 / 3), 0), 1), abs=0.01)


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


def test_errors_are_shown_in_words_and_leave_no_dead_player(page, tmp_path, artifacts):
    good = tmp_path / "good.wav"
    good.write_bytes(audio_bytes(1.0))
    upload(page, good)
    assert page.is_visible("#player")
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file with an audio name\n" * 50)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an audio file" in page.inner_text("#error")
    assert page.get_attribute("#error", "role") == "alert" and page.is_hidden("#result")
    assert page.is_hidden("#clip") and page.get_attribute("#player", "src") is None
    assert page.evaluate("document.activeElement.id") == "error"
    page.screenshot(path=str(artifacts / "desktop-error.png"), full_page=True)


def test_keyboard_reaches_every_control_in_order(page):
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert order[:5] == ["skip", "model", "vad", "file", "record"]


@pytest.fixture
def phone(browser, server):
    """A 375 px wide touch screen."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, reduced_motion="reduce",
                                  has_touch=True, is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    yield page
    context.close()


def test_phone_scrolls_to_the_result_and_taps_play_segments(phone, tmp_path, artifacts):
    clip = tmp_path / "c.flac"
    sf.write(str(clip), long_recording(30), 16000)
    upload(phone, clip)
    phone.wait_for_function("() => document.activeElement.id === 'result'")
    assert in_view(phone, "#result-card") and phone.evaluate("window.scrollY") > 200
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375     # no sideways scrolling
    phone.screenshot(path=str(artifacts / "phone-result.png"))
    phone.screenshot(path=str(artifacts / "phone-result-full.png"), full_page=True)
    rows = phone.locator("#segments .segment")
    assert rows.count() == 5 and all(rows.nth(i).bounding_box()["height"] >= 40 for i in range(5))  # tap-sized
    phone.tap("#timeline .cell:nth-child(3)")
    phone.wait_for_function("() => !document.getElementById('player').paused")
    assert 11.8 <= phone.evaluate("document.getElementById('player').currentTime") < 16.5
    assert re.match(r"1[12]\.\d–1[56]\.\d s: ", phone.inner_text("#readout"))


def test_phone_scrolls_to_an_error(phone, tmp_path, artifacts):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio\n" * 100)
    phone.set_input_files("#file", str(bad))
    phone.wait_for_selector("#error:not([hidden])")
    phone.wait_for_function("() => document.activeElement.id === 'error'")
    assert in_view(phone, "#error") and phone.is_hidden("#clip")
    phone.screenshot(path=str(artifacts / "phone-error.png"))


def test_server_logs_every_request(server, page, tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_text("no")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    log = SERVER_LOG["path"].read_text()
    assert '"GET / " 200' not in log and '"GET /" 200' in log
    assert '"POST /api/predict" 415' in log and " ms" in log


def test_one_voice_is_offered_for_a_model_that_adapts_and_answers_as_one_voice(browser, tmp_path_factory,
                                                                              tmp_path, artifacts):
    """The shipped default can adapt to a speaker: with it chosen, "One voice" shows (hidden for
    the tiny CNN), is reached by Tab after the long-recording menu, and ticking it analyses the
    recording again as one voice (the timeline's heading says so); "Several voices" tells them
    apart (each segment says its voice), and the two exclude each other."""
    from serkit.inference import shipped_model_path

    folder = tmp_path_factory.mktemp("voice")
    proc, url, log = start_server(folder, (f"default={shipped_model_path('default')}",))
    context = browser.new_context(viewport={"width": 1200, "height": 900}, reduced_motion="reduce")
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(url)
        assert page.is_hidden("#voice-field") and page.is_hidden("#voice-hint")    # tiny: no speaker head
        page.select_option("#model", "default")
        assert page.is_visible("#voice-field") and "one person" in page.inner_text("#voice-hint")
        page.focus("#vad")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "same-speaker"
        path = tmp_path / "long.wav"
        sf.write(path, long_recording(60), 16000)
        before = upload(page, path)
        assert before["cells"] >= 2 and "judged as one voice" not in page.inner_text("#timeline-hint")
        page.check("#same-speaker")           # the clip on show is analysed again, as one voice
        sync_api.expect(page.locator("#timeline-hint")).to_contain_text("judged as one voice", timeout=TIMEOUT_MS)
        after = read_result(page)
        assert after["model"] == "default" and after["cells"] == before["cells"]
        page.screenshot(path=str(artifacts / "desktop-one-voice.png"), full_page=True)
        assert page.is_visible("#voices-field")      # a call: its voices told apart; "One voice" unticked
        page.check("#several-voices")
        sync_api.expect(page.locator("#timeline-hint")).to_contain_text("told apart", timeout=TIMEOUT_MS)
        assert not page.is_checked("#same-speaker") and "· voice A" in page.inner_text("#segments")
        assert "one speaker can be split" in page.inner_text("#timeline-hint")      # a rough count, said so
        page.check("#same-speaker")
        sync_api.expect(page.locator("#timeline-hint")).to_contain_text("judged as one voice", timeout=TIMEOUT_MS)
        assert not page.is_checked("#several-voices") and "voice A" not in page.inner_text("#segments")
        short = tmp_path / "short.wav"          # one stretch of speech: nothing to adapt to, and it says so
        sf.write(short, long_recording(60)[:3 * 16000], 16000)
        upload(page, short)
        assert "Not adapted to the voice" in page.inner_text("#status")
        assert problems == []
    finally:
        context.close()
        proc.terminate()
        proc.wait(10)
    assert "Traceback" not in log.read_text()


# -- requests, recording and conversions at their edges (stubs where the real thing is slow) -----

def requests_to(page, answer=None) -> list:
    """Hold every /api/predict request (answer=None) or answer each with ``answer(route)``; the
    list fills with the requests' routes as they come."""
    seen: list = []
    page.route("**/api/predict", lambda route: (seen.append(route), answer and answer(route)))
    return seen


def unsupported(route):
    """The server's reply to a format it does not read (the page converts such a file itself)."""
    route.fulfill(status=415, content_type="application/json", body=json.dumps({
        "status": 415, "error": "unsupported_format", "message": "WebM/Matroska audio is not supported; "
        "convert it to WAV (the page does this for you in most browsers)."}))


def wait_until(page, check, ms: int = 10_000):
    for _ in range(ms // 50):
        if check():
            return
        page.wait_for_timeout(50)
    raise AssertionError("timed out")


def drop_bytes(page, n: int, name: str):
    """Drop a file of ``n`` zero bytes, made in the page (nothing large crosses the wire)."""
    page.evaluate("""([n, name]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new ArrayBuffer(n)], name, { type: "audio/ogg" }));
        const drop = document.getElementById("drop");
        for (const type of ["dragenter", "dragover", "drop"])
            drop.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }""", [n, name])


def with_script(page, script: str):
    """The page again, with ``script`` run before its own (a stub of a browser API)."""
    page.context.add_init_script(script)
    page.reload()


def test_cancel_stops_a_slow_request_and_restores_the_controls(page, tmp_path):
    clip = tmp_path / "slow.wav"
    clip.write_bytes(audio_bytes(1.0))
    held = requests_to(page)
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#cancel:not([hidden])")
    assert page.is_disabled("#model") and page.is_disabled("#file")
    page.click("#cancel")
    assert page.inner_text("#status") == "Cancelled: slow.wav was not analysed."
    assert page.is_hidden("#cancel") and page.is_hidden("#progress") and page.is_hidden("#result")
    assert not page.is_disabled("#model") and not page.is_disabled("#file") and not page.is_disabled("#record")
    assert page.get_attribute("#result-card", "aria-busy") == "false" and len(held) == 1
    page.unroute("**/api/predict")
    assert upload(page, clip)["model"] == "tiny"            # and the next clip is analysed as usual


def test_one_request_at_a_time_while_recording(page, tmp_path):
    """A clip on show, then a recording: a setting changed while recording does not send the clip
    on show again (it applies to the recording), and the recording's reply is the one shown."""
    clip = tmp_path / "shown.wav"
    clip.write_bytes(audio_bytes(2.0))
    upload(page, clip)
    held = requests_to(page)
    page.click("#record")
    page.wait_for_selector("#record.recording")
    page.select_option("#vad", "none")
    page.wait_for_timeout(1500)
    assert held == [] and not page.is_disabled("#vad")
    page.click("#record")
    wait_until(page, lambda: held)
    body = held[0].request.post_data_buffer
    assert b'filename="recording.wav"' in body and b'name="vad"\r\n\r\nnone' in body
    page.wait_for_timeout(300)
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/api/predict")
    read_result(page)
    assert page.inner_text("#clip-name") == "recording.wav" and not page.is_disabled("#model")
    assert page.get_attribute("#result-card", "aria-busy") == "false"


STREAMS = """
  window.__asked = 0; window.__streams = [];
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => { window.__asked++;     // a slow permission prompt
    return new Promise((r) => setTimeout(r, 800)).then(() => real(c))
      .then((s) => { window.__streams.push(s); return s; }); };
"""
ALL_ENDED = "() => window.__streams.every((s) => s.getTracks().every((t) => t.readyState === 'ended'))"


def test_record_pressed_twice_while_the_browser_asks_leaves_no_microphone_open(page):
    with_script(page, STREAMS)
    page.click("#record")
    assert "press to cancel" in page.inner_text("#record")
    assert "Waiting for the microphone" in page.inner_text("#status")
    page.wait_for_timeout(150)
    page.click("#record")                                  # given up before the microphone came
    assert page.inner_text("#status") == "Recording cancelled."
    assert page.get_attribute("#record", "aria-pressed") == "false"
    page.wait_for_function("() => window.__streams.length === 1")
    page.wait_for_function(ALL_ENDED)                      # the late stream is closed at once
    page.wait_for_timeout(300)
    assert page.evaluate("window.__asked") == 1 and page.is_hidden("#error")
    assert page.get_attribute("#record", "aria-pressed") == "false"
    page.click("#record")                                  # a real recording after it
    page.wait_for_selector("#record.recording")
    page.wait_for_timeout(1200)
    page.click("#record")
    assert read_result(page)["emotion"] in LABELS
    page.wait_for_function(ALL_ENDED)
    assert page.evaluate("window.__asked") == 2


def test_a_recording_stopped_at_once_is_called_empty(page):
    page.evaluate("""() => new Promise((done) => {      // Stop pressed the moment recording starts
        const b = document.getElementById("record");
        new MutationObserver((_, seen) => {
            if (b.classList.contains("recording")) { seen.disconnect(); b.click(); done(); }
        }).observe(b, { attributes: true });
        b.click();
    })""")
    page.wait_for_selector("#error:not([hidden])")
    text = page.inner_text("#error")
    assert "empty or too short" in text and "converted" not in text


def test_a_refused_microphone_says_how_to_allow_it(page):
    with_script(page, "navigator.mediaDevices.getUserMedia = () => "
                      "Promise.reject(new DOMException('denied', 'NotAllowedError'));")
    page.click("#record")
    page.wait_for_selector("#error:not([hidden])")
    text = page.inner_text("#error")
    assert "not allowed to use the microphone" in text and "address bar" in text and "settings" in text
    assert page.get_attribute("#record", "aria-pressed") == "false" and not page.is_disabled("#record")


def test_a_silent_clip_shows_no_strip_and_no_advice(page, tmp_path):
    clip = tmp_path / "silence.wav"
    clip.write_bytes(wav_bytes(np.zeros(8 * 16000, np.float32)))      # longer than a window
    r = upload(page, clip)
    assert r["emotion"] == "No speech" and "silent" in page.inner_text("#confidence")
    assert page.is_hidden("#timeline-block") and "Equal pieces" not in page.inner_text("#result")


def test_voice_count_is_given_as_rough(page, tmp_path):
    probs = {"angry": 0.6, "happy": 0.3, "sad": 0.1}
    reply = {"emotion": "angry", "confidence": 0.6, "uncertain": False, "reason": None, "probabilities": probs,
             "model": "tiny", "duration_s": 12.0, "speech_s": 10.0, "window_s": 3.0, "elapsed_ms": 5.0,
             "vad": "energy", "adapted": True, "voices": 5,
             "timeline": [{"start": 2.0 * k, "end": 2.0 * k + 2, "emotion": "angry", "confidence": 0.6,
                           "uncertain": False, "probabilities": probs, "windows": 1, "voice": k} for k in range(5)]}
    requests_to(page, lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(reply)))
    clip = tmp_path / "call.wav"
    clip.write_bytes(audio_bytes(1.0))
    upload(page, clip)
    hint = page.inner_text("#timeline-hint")
    assert "5 voices told apart" in hint and "roughly: one speaker can be split" in hint
    assert "told apart roughly" in page.text_content("#voice-hint")


def test_sizes_in_mib_that_tell_the_file_from_the_limit(page):
    assert "up to 20 MiB and 120 s" in page.inner_text("#file-hint")
    held = requests_to(page)
    drop_bytes(page, 20 * 1048576 + 105, "big.ogg")                   # 20.0001 MiB
    page.wait_for_selector("#error:not([hidden])")
    assert "The file is 20.0001 MiB; this server takes at most 20 MiB per upload" in page.inner_text("#error")
    drop_bytes(page, 20 * 1048576 - 100, "big.ogg")                   # under the limit, but not with the form
    page.wait_for_function("() => document.getElementById('error').textContent.includes('19.9999 MiB')")
    assert "form data" in page.inner_text("#error") and held == []


def small_limit(page, server, limit: int):
    """The page as served, with a smaller byte limit in its settings."""
    def answer(route):
        html = route.fetch().text()
        route.fulfill(status=200, content_type="text/html", body=re.sub(r'"max_upload_bytes": *\d+',
                                                                      f'"max_upload_bytes": {limit}', html))
    page.route(server, answer)
    page.reload()


def test_a_file_converted_in_the_page_is_checked_against_the_limits(page, server, tmp_path):
    """A file the server does not read (stubbed: every reply is 415 unsupported_format) is decoded
    in the page; too long, or too large as WAV, it is refused there, and only the first request
    (the original file) is sent."""
    held = requests_to(page, unsupported)
    t = np.arange(125 * 16000) / 16000
    chirp = (0.3 * np.sin(2 * np.pi * (200 + 2 * t) * t)).astype(np.float32)
    long_ogg = tmp_path / "long.ogg"
    sf.write(str(long_ogg), chirp, 16000, format="OGG", subtype="VORBIS")
    page.set_input_files("#file", str(long_ogg))
    page.wait_for_selector("#error:not([hidden])")
    assert "The file is 2:05 (125 s) long; this server takes at most 120 s" in page.inner_text("#error")
    assert len(held) == 1
    small_limit(page, server, 1_000_000)
    minute = tmp_path / "minute.ogg"                          # 60 s: 1.92 MB once a 16 kHz WAV
    sf.write(str(minute), chirp[:60 * 16000], 16000, format="OGG", subtype="VORBIS")
    assert minute.stat().st_size < 500_000
    page.set_input_files("#file", str(minute))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('converted to WAV')")
    assert "1.83 MiB; this server takes at most 0.954 MiB" in page.inner_text("#error") and len(held) == 2
    drop_bytes(page, 1_200_000, "big.ogg")                    # compressed, and already over the limit
    page.wait_for_function("() => document.getElementById('error').textContent.includes('The file is 1.14 MiB')")
    assert len(held) == 2


def test_a_file_neither_the_server_nor_the_browser_reads(page, tmp_path):
    webm = tmp_path / "broken.webm"
    webm.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(4000))      # the server says 415 unsupported_format
    page.set_input_files("#file", str(webm))
    page.wait_for_selector("#error:not([hidden])")
    text = page.inner_text("#error")
    assert "this browser could not convert the file to WAV either" in text and "does this for you" not in text

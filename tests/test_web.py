"""The web app through Flask's test client: every endpoint, every error status, hostile uploads.

The app serves a tiny untrained CNN-LSTM bundle built here, so the tests check the service (status
codes, JSON shape, limits, decoding), not the model's accuracy.
"""
from __future__ import annotations

import io
import json
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from serkit.bundle import BundleError, save_bundle
from serkit.inference import load_model, window_starts
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from serkit.web import create_app
from serkit.web.serve import parse_model_specs
from serkit.web.uploads import sniff

LABELS = ["angry", "happy", "sad"]
SR = 16000


def make_bundle(folder: Path, seed: int = 0, labels: list[str] = LABELS) -> Path:
    torch.manual_seed(seed)
    model = CNNLSTM(CNNLSTMConfig(n_classes=len(labels), channels=[4, 8, 8], lstm_hidden=8))
    return save_bundle(folder, model, labels, {"sample_rate": SR, "clip_seconds": 3.0},
                       metrics={"test": {"accuracy": 0.5, "n": 10, "uncertain": {
                           "share": 0.4, "accuracy_flagged": 0.25, "accuracy_unflagged": 0.6667}}})


def audio_bytes(seconds: float = 1.0, sr: int = SR, channels: int = 1, fmt: str = "WAV",
                subtype: str | None = None, amplitude: float = 0.3, seed: int = 0) -> bytes:
    """A chirp with a little noise, encoded in memory."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = amplitude * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.01 * rng.standard_normal(len(t))
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_header(data_bytes: int, rate: int = SR, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical 44-byte PCM WAV header that claims ``data_bytes`` of samples."""
    align = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * align, align, bits)
            + b"data" + struct.pack("<I", data_bytes))


def flac_claiming(seconds: float, sr: int = SR, channels: int = 1, actual: float = 0.5) -> bytes:
    """A valid FLAC of ``actual`` seconds whose STREAMINFO says it is ``seconds`` long (0: unknown,
    as a streaming encoder writes it)."""
    data = bytearray(audio_bytes(actual, sr=sr, channels=channels, fmt="FLAC"))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0        # first block is STREAMINFO
    at = 8 + 13                                               # byte holding bits-per-sample low bits + total samples
    total = int(seconds * sr)
    packed = int.from_bytes(data[at:at + 5], "big")
    packed = (packed & ~((1 << 36) - 1)) | total
    data[at:at + 5] = packed.to_bytes(5, "big")
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Like ``serkit serve`` (one torch thread per request): steady timings on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("web") / "tiny")


@pytest.fixture(scope="module")
def app(bundle):
    return create_app({"SERKIT_MODELS": {"tiny": bundle}, "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def post_file(client, data: bytes, filename: str = "clip.wav", **form):
    return client.post("/api/predict", data={"file": (io.BytesIO(data), filename), **form},
                       content_type="multipart/form-data")


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["status"] == status and body["message"]
    if code:
        assert body["error"] == code
    return body


# -- endpoints ---------------------------------------------------------------------------------

def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok", "version": r.get_json()["version"],
                                                     "models": ["tiny"]}


def test_models_lists_labels_audio_settings_metrics_and_limits(client):
    body = client.get("/api/models").get_json()
    assert body["default"] == "tiny"
    (m,) = body["models"]
    assert m["name"] == "tiny" and m["labels"] == LABELS and m["model_type"] == "cnn_lstm"
    assert m["audio"] == {"sample_rate": SR, "clip_seconds": 3.0}
    assert m["metrics"]["test"]["accuracy"] == 0.5
    assert body["limits"] == {"max_upload_bytes": 20 * 1024 * 1024, "max_seconds": 120.0, "min_seconds": 0.25}


def test_openapi_documents_every_api_route_and_error_status(app, client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    routes = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/") or r.rule == "/healthz"}
    assert routes == set(spec["paths"])
    responses = spec["paths"]["/api/predict"]["post"]["responses"]
    assert {"200", "400", "404", "413", "415", "422"} <= set(responses)
    assert spec["paths"]["/api/predict"]["post"]["parameters"][0]["schema"]["enum"] == ["tiny"]


def test_the_docs_name_the_errors_and_fields_the_server_gives(client):
    """docs/web.md's error table and uploads.py's status rules name only codes the server answers
    with (the OpenAPI list) at their status; short, silent and no-speech clips are answers (200),
    with a `vad` and a `speech_s` as for any clip, as the docs say."""
    import serkit.web.uploads as uploads

    spec = client.get("/api/openapi.json").get_json()
    codes = set(re.findall(r"\b[a-z_]+\b", spec["components"]["schemas"]["Error"]["properties"]["error"]
                           ["description"].split(":", 1)[1]))
    statuses = set(spec["paths"]["/api/predict"]["post"]["responses"])
    docs = (Path(__file__).resolve().parents[1] / "docs" / "web.md").read_text(encoding="utf-8")
    table = docs.split("### Errors", 1)[1].split("\n\n| status |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| ([^|]*) \|", table, re.M)
    assert len(rows) >= 5
    for status, named in rows:
        assert status in statuses and set(re.findall(r"`(\w+)`", named)) <= codes, (status, named)
    rules = re.findall(r"^- (\d{3}) ``(\w+)``", uploads.__doc__, re.M)
    assert ("400", "empty") in rules and all(s in statuses and c in codes for s, c in rules), rules
    assert_error(post_file(client, b""), 400, "empty")
    for data in (audio_bytes(2.5), audio_bytes(0.1), wav_bytes(np.zeros(SR, np.float32))):
        r = post_file(client, data, vad="energy")
        body = r.get_json()
        assert r.status_code == 200 and body["vad"] == "energy" and isinstance(body["speech_s"], float)
    assert "`vad` is never null" in docs and "are null" not in docs


def test_page_has_model_choice_upload_record_and_strict_csp(client, bundle):
    r = client.get("/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert '<label for="model">' in html and '<label for="file"' in html and 'id="record"' in html
    assert '"labels": ["angry", "happy", "sad"]' in html or '"labels":["angry","happy","sad"]' in html
    # the held-out figures the page quotes beside the model menu and an uncertain answer
    settings = json.loads(re.search(r'<script type="application/json" id="settings">(.*?)</script>', html, re.S)[1])
    assert settings["models"][0]["held_out"] == {"accuracy": 0.5, "n": 10, "flagged_right": 0.25,
                                                 "unflagged_right": 0.6667}
    # "One voice" is offered only for a model that can adapt (this CNN cannot: the page hides it)
    assert settings["models"][0]["can_adapt"] is False and 'id="same-speaker" name="same_speaker"' in html
    # nothing is quoted for a model whose test speakers were in training (a random split)
    from serkit.web.page import held_out
    leaky = {**load_model(bundle).config, "training": {"config": {"split": "random"}}}
    assert held_out(leaky) == {} and held_out({**leaky, "training": {"config": {"split": "speaker"}}})
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no CDN
    for name in ("app.js", "style.css", "favicon.svg"):
        s = client.get(f"/static/{name}")
        assert s.status_code == 200 and len(s.data) > 100
        s.close()


# -- predictions -------------------------------------------------------------------------------

def test_predict_multipart_matches_the_predictor(client, bundle):
    data = audio_bytes(2.0)
    r = post_file(client, data)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert list(body["probabilities"]) == LABELS                     # label order kept
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert body["emotion"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == body["probabilities"][body["emotion"]]
    assert body["model"] == "tiny" and body["duration_s"] == 2.0 and body["window_s"] == 3.0
    assert body["elapsed_ms"] > 0 and body["timeline"] == [] and body["vad"] == "energy"   # $SERKIT_VAD (conftest)
    expected = load_model(bundle).predict_waveform(sf.read(io.BytesIO(data), dtype="float32")[0])
    for label in LABELS:
        assert body["probabilities"][label] == pytest.approx(expected.probabilities[label], abs=1e-4)


def test_predict_raw_body_and_model_in_query(client):
    r = client.post("/api/predict?model=tiny", data=audio_bytes(1.0), content_type="audio/wav")
    assert r.status_code == 200 and r.get_json()["model"] == "tiny"
    r = client.post("/api/predict", data=audio_bytes(1.0, fmt="FLAC"),
                    content_type="application/x-www-form-urlencoded")   # what curl --data-binary sends
    assert r.status_code == 200


def speech_and_pause(sr: int = SR) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """8 s: a 2 s chirp, 2 s of near silence, a 4 s chirp; and where the two sounds are (s)."""
    rng = np.random.default_rng(2)
    t = np.arange(sr * 8) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t) + 0.001 * rng.standard_normal(len(t))
    x[2 * sr:4 * sr] = 0.001 * rng.standard_normal(2 * sr)
    return x.astype(np.float32), [(0.0, 2.0), (4.0, 8.0)]


def wav_bytes(x: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV")
    return buf.getvalue()


def test_long_clip_timeline_is_the_speech_segments(client, bundle):
    wave, truth = speech_and_pause()
    body = post_file(client, wav_bytes(wave), vad="energy").get_json()
    predictor = load_model(bundle)
    assert body["vad"] == "energy" and body["duration_s"] == 8.0
    segments = body["timeline"]
    assert len(segments) == len(truth)
    for seg, (start, end) in zip(segments, truth):          # the pause is a gap in the timeline
        assert abs(seg["start"] - start) <= 0.15 and abs(seg["end"] - end) <= 0.15
        a, b = round(seg["start"] * SR), round(seg["end"] * SR)
        expected = predictor.predict_proba([wave[a:b]])[0]  # each segment is scored like a clip of its own
        assert list(seg["probabilities"]) == LABELS
        assert list(seg["probabilities"].values()) == pytest.approx(expected.tolist(), abs=2e-4)
        assert seg["emotion"] == LABELS[int(np.argmax(expected))] and seg["confidence"] == max(seg["probabilities"].values())
        assert seg["windows"] == len(window_starts(b - a, 3 * SR, 3 * SR // 2))   # 3 s windows, 50 % overlap
        assert seg["uncertain"] == predictor.scorer.is_uncertain(expected)        # flagged as a clip would be
    assert [s["windows"] for s in segments] == [1, 2]
    assert any(s["uncertain"] for s in segments)     # the untrained tiny model is unsure of everything
    assert body["speech_s"] == pytest.approx(sum(s["end"] - s["start"] for s in segments), abs=1e-3)
    # the headline is the duration-weighted mean of the segments, the pause left out ...
    dur = np.array([s["end"] - s["start"] for s in segments])
    mixed = sum(d * np.array(list(s["probabilities"].values())) for d, s in zip(dur, segments)) / dur.sum()
    assert list(body["probabilities"].values()) == pytest.approx(mixed.tolist(), abs=2e-4)
    # ... and what `serkit predict` and the Python API give for the same audio
    same = predictor.predict_waveform(wave)
    assert body["probabilities"] == same.probabilities and body["emotion"] == same.emotion


def test_vad_none_scores_equal_pieces_and_the_server_default_vad(client, bundle):
    wave, _ = speech_and_pause()
    body = client.post("/api/predict?vad=none", data=wav_bytes(wave), content_type="audio/wav").get_json()
    assert body["vad"] == "none"
    assert [(s["start"], s["end"]) for s in body["timeline"]] == [(0.0, 3.0), (3.0, 6.0), (6.0, 8.0)]
    energy = create_app({"SERKIT_MODELS": {"tiny": bundle}, "SERKIT_TIMELINE_VAD": "energy"}).test_client()
    body = post_file(energy, wav_bytes(wave)).get_json()        # the request names no vad
    assert body["vad"] == "energy" and len(body["timeline"]) == 2
    assert energy.get("/api/openapi.json").get_json()["paths"]["/api/predict"]["post"]["parameters"][1][
        "schema"]["default"] == "energy"
    with pytest.raises(ValueError, match="SERKIT_TIMELINE_VAD"):
        create_app({"SERKIT_MODELS": {"tiny": bundle}, "SERKIT_TIMELINE_VAD": "webrtc"})


@pytest.mark.parametrize("server_vad", [None, "energy", "none"])
def test_the_page_sends_a_long_recording_choice_the_api_takes(bundle, server_vad):
    """Each choice of the page's "Long recordings" menu, sent as the page's form sends it, is
    answered (a plain `serkit serve`, with no --vad, once sent "None" and got a 400 for every upload)."""
    client = create_app({"SERKIT_MODELS": {"tiny": bundle}, "SERKIT_TIMELINE_VAD": server_vad}).test_client()
    html = client.get("/").get_data(as_text=True)
    menu = re.search(r'<select id="vad".*?</select>', html, re.S)[0]
    values = re.findall(r'<option value="([^"]*)"', menu)
    assert len(values) == 2 and values[1] == "none"
    wave, _ = speech_and_pause()
    for value in values:
        r = post_file(client, wav_bytes(wave), vad=value)
        assert r.status_code == 200, r.get_data(as_text=True)
        # "": the model's own detector (the tiny bundle's: energy); "auto": silero, found installed
        assert r.get_json()["vad"] == {"": "energy", "auto": "silero"}.get(value, value)


def test_timeline_only_for_clips_longer_than_one_window_and_bad_vad_is_400(client):
    body = post_file(client, audio_bytes(2.5), vad="energy").get_json()
    assert body["timeline"] == [] and body["vad"] == "energy" and body["speech_s"] > 2.0
    assert_error(post_file(client, audio_bytes(4.0), vad="webrtc"), 400, "bad_request")
    assert_error(client.post("/api/predict?vad=webrtc", data=audio_bytes(4.0), content_type="audio/wav"),
                 400, "bad_request")


def test_silero_finds_no_speech_in_tones(client):
    wave, _ = speech_and_pause()
    r = post_file(client, wav_bytes(wave), vad="silero")
    body = r.get_json()
    assert r.status_code == 200 and body["vad"] == "silero" and body["timeline"] == [] and body["speech_s"] == 0.0
    assert body["emotion"] is None and body["confidence"] is None and body["probabilities"] == {}
    assert body["reason"].startswith("no speech detected")


@pytest.mark.parametrize("kind, data, duration", [
    ("stereo 48 kHz WAV", audio_bytes(1.5, sr=48000, channels=2), 1.5),
    ("24-bit 44.1 kHz WAV", audio_bytes(1.0, sr=44100, subtype="PCM_24"), 1.0),
    ("FLAC", audio_bytes(1.0, sr=22050, fmt="FLAC"), 1.0),
    ("OGG Vorbis", audio_bytes(1.0, sr=44100, fmt="OGG", subtype="VORBIS"), 1.0),
    ("OGG Opus", audio_bytes(1.0, sr=48000, fmt="OGG", subtype="OPUS"), 1.0),
    ("MP3", audio_bytes(1.0, sr=44100, fmt="MP3", subtype="MPEG_LAYER_III"), None),
    ("AIFF", audio_bytes(1.0, fmt="AIFF"), 1.0),
    ("8 kHz WAV", audio_bytes(1.0, sr=8000), 1.0),
])
def test_audio_formats_are_accepted(client, kind, data, duration):
    r = post_file(client, data, filename="clip.bin")
    assert r.status_code == 200, (kind, r.get_json())
    if duration is not None:
        assert r.get_json()["duration_s"] == pytest.approx(duration, abs=0.01)


def test_traversal_file_name_is_ignored_and_nothing_is_written(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    def no_disk(*args, **kwargs):
        raise AssertionError("an upload must not be spooled to a temporary file")
    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    big = audio_bytes(9.0, subtype="FLOAT")           # 576 kB: past werkzeug's 500 kB spool size
    for filename in ("../../etc/passwd.wav", "/etc/passwd", "..\\..\\x.wav", "a\x00b.wav", ""):
        r = post_file(client, big if filename.startswith("../") else audio_bytes(0.5), filename=filename)
        assert r.status_code == 200, (filename, r.get_json())
        assert "passwd" not in r.get_data(as_text=True)
    assert list(tmp_path.iterdir()) == []


# -- errors ------------------------------------------------------------------------------------

def test_empty_upload_is_400(client):
    assert_error(post_file(client, b""), 400, "empty")
    assert_error(client.post("/api/predict", data=b""), 400, "empty")


def test_missing_file_field_is_400(client):
    assert_error(client.post("/api/predict", data={"other": (io.BytesIO(b"x"), "a.wav")},
                             content_type="multipart/form-data"), 400, "no_file")


def test_file_sent_as_a_text_field_says_so(client):
    """curl -F "file=<clip.wav" sends the bytes as a text field, without a file name."""
    body = assert_error(client.post("/api/predict", data={"file": "RIFF$\x00\x00\x00WAVEfmt ", "model": "tiny"},
                                    content_type="multipart/form-data"), 400, "no_file")
    assert "'file' was sent as text" in body["message"] and "curl -F file=@clip.wav" in body["message"]
    body = assert_error(client.post("/api/predict", data={"model": "tiny"}, content_type="multipart/form-data"),
                        400, "no_file")
    assert "as text" not in body["message"]


def test_random_bytes_are_415(client):
    data = np.random.default_rng(0).bytes(50_000)
    assert sniff(data) is None
    assert_error(post_file(client, data, "noise.wav"), 415, "not_audio")


def test_text_file_called_wav_is_415(client):
    assert_error(post_file(client, b"hello, I am not audio\n" * 100, ".wav"), 415, "not_audio")
    assert_error(client.post("/api/predict", data="<html></html>", content_type="audio/wav"), 415)


def test_other_audio_containers_are_415_with_a_hint(client):
    webm = b"\x1a\x45\xdf\xa3" + bytes(2000)
    m4a = b"\x00\x00\x00\x20ftypM4A " + bytes(2000)
    for data in (webm, m4a):
        body = assert_error(post_file(client, data, "clip.webm"), 415, "unsupported_format")
        assert "convert" in body["message"]


def test_corrupt_and_truncated_audio_is_400(client):
    wav = audio_bytes(1.0)
    assert_error(post_file(client, wav[:40]), 400, "undecodable")          # header cut short
    assert_error(post_file(client, b"RIFF" + bytes(4) + b"WAVEjunkjunk" + bytes(500)), 400, "undecodable")
    assert_error(post_file(client, b"fLaC" + np.random.default_rng(0).bytes(3000)), 400, "undecodable")
    assert_error(post_file(client, b"OggS" + np.random.default_rng(1).bytes(3000)), 400, "undecodable")


def test_a_wav_cut_short_is_answered_with_a_note_or_refused(client):
    """An upload holding 60 % of what its WAV header names is answered on what it holds, and
    the reply's note says so (the CLI's note, in the API); under half is refused; a whole file
    and a streaming writer's placeholder size have no note."""
    wav = audio_bytes(2.0)
    r = post_file(client, wav[:44 + int(0.6 * (len(wav) - 44)) // 2 * 2], vad="energy")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert "cut short: it holds 1.20 s of the 2.00 s" in body["note"] and body["duration_s"] == pytest.approx(1.2, abs=1e-3)
    assert post_file(client, wav, vad="energy").get_json()["note"] is None
    placeholder = bytearray(wav)
    i = wav.find(b"data")
    placeholder[i + 4:i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    r = post_file(client, bytes(placeholder), vad="energy")
    assert r.status_code == 200 and r.get_json()["note"] is None and r.get_json()["duration_s"] == pytest.approx(2.0)
    assert_error(post_file(client, wav[:44 + (len(wav) - 44) // 3 // 2 * 2]), 400, "undecodable")


def test_unsupported_rate_or_channels_is_400(client):
    assert_error(post_file(client, audio_bytes(1.0, sr=2000)), 400, "undecodable")
    assert_error(post_file(client, wav_header(32 * 2 * SR, channels=32) + bytes(32 * 2 * SR)), 400, "undecodable")


def test_huge_header_only_wav_is_refused_without_reading_what_it_promises(client, monkeypatch):
    """A header promising hours over 64 bytes of data: what is there is decoded (32 samples), not
    what the header promises, and the upload is refused as truncated. A check of what runs, not
    of how long it takes, so a busy machine cannot fail it."""
    import serkit.web.uploads as uploads

    decoded, real = [], uploads.load_audio

    def counting(*args, **kwargs):
        wave = real(*args, **kwargs)
        decoded.append(len(wave))
        return wave

    monkeypatch.setattr(uploads, "load_audio", counting)
    for seconds in (3 * 3600, 12 * 3600):
        data = wav_header(min(seconds * SR * 2, 0xFFFFFFFF - 36)) + bytes(64)
        r = post_file(client, data, "huge.wav")
        body = assert_error(r, r.status_code)
        assert r.status_code in (400, 413) and ("truncated" in body["message"] or r.status_code == 413)
    assert decoded and max(decoded) <= 64


def test_flac_claiming_hours_is_413_before_decoding(client, monkeypatch):
    import serkit.web.uploads as uploads

    def no_decoding(*args, **kwargs):
        raise AssertionError("the upload was decoded")

    monkeypatch.setattr(uploads, "load_audio", no_decoding)
    body = assert_error(post_file(client, flac_claiming(5 * 3600), "liar.flac"), 413, "too_long")
    assert body["duration_s"] == 5 * 3600


def test_streamed_flac_without_a_length_is_400_not_a_huge_allocation(client):
    # libsndfile reports 2**63-1 frames; reading "everything" would allocate exabytes
    body = assert_error(post_file(client, flac_claiming(0, actual=1.5), "stream.flac"), 400, "undecodable")
    assert "how long" in body["message"]


def test_too_long_audio_is_413(client):
    body = assert_error(post_file(client, audio_bytes(121.0, sr=8000)), 413, "too_long")
    assert "120 s" in body["message"]


def test_too_many_samples_is_413(client):
    data = flac_claiming(60, sr=192000, channels=8)      # 60 s, but 92 M samples to decode
    assert len(data) < 2_000_000
    assert_error(post_file(client, data), 413, "too_large")


def test_upload_over_byte_limit_is_413(bundle):
    app = create_app({"SERKIT_MODELS": {"tiny": bundle}, "MAX_CONTENT_LENGTH": 100_000})
    client = app.test_client()
    data = audio_bytes(5.0)                                 # 160 kB
    assert_error(post_file(client, data), 413, "too_large")
    assert_error(client.post("/api/predict", data=data, content_type="audio/wav"), 413, "too_large")
    assert post_file(client, audio_bytes(1.0)).status_code == 200


def test_too_short_audio_is_no_speech(client):
    body = post_file(client, audio_bytes(0.1)).get_json()
    assert body["emotion"] is None and "shorter than 0.25 s" in body["reason"]
    assert_error(post_file(client, wav_header(0)), 400, "undecodable")      # a header, no samples: not audio at all


@pytest.mark.parametrize("wave", [
    np.zeros(SR * 2, np.float32),                                  # digital silence
    (10 ** (-75 / 20) * np.random.default_rng(0).standard_normal(SR * 2)).astype(np.float32),
])
def test_silence_is_no_speech(client, wave):
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="WAV", subtype="FLOAT")
    r = post_file(client, buf.getvalue())
    assert r.status_code == 200 and r.get_json()["emotion"] is None
    assert "silent" in r.get_json()["reason"]


def test_quiet_speech_level_audio_is_accepted(client):
    assert post_file(client, audio_bytes(1.0, amplitude=0.01)).status_code == 200   # about -43 dBFS


def test_unknown_model_is_404(client):
    body = assert_error(post_file(client, audio_bytes(1.0), model="nope"), 404, "unknown_model")
    assert body["models"] == ["tiny"]
    assert_error(client.post("/api/predict?model=nope", data=audio_bytes(1.0)), 404, "unknown_model")


def test_unknown_route_and_wrong_method_are_json(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/predict"), 405)
    assert client.get("/nothing").status_code == 404


def test_malformed_multipart_is_a_client_error(client):
    r = client.post("/api/predict", data=b"--xx\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
                    content_type="multipart/form-data; boundary=xx")
    assert 400 <= r.status_code < 500 and r.is_json
    r = client.post("/api/predict", data=b"garbage", content_type="multipart/form-data")   # no boundary
    assert 400 <= r.status_code < 500 and r.is_json


def test_mutated_uploads_never_give_5xx(client):
    """A small in-process fuzz run (the long one is in benchmarks/load.py)."""
    rng = np.random.default_rng(0)
    seeds = [audio_bytes(0.5), audio_bytes(0.5, fmt="FLAC"), audio_bytes(0.5, fmt="OGG", subtype="VORBIS"),
             audio_bytes(0.5, sr=48000, channels=2), wav_header(0xFFFFFF00)]
    statuses = []
    for i in range(150):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 12))):
            at = int(rng.integers(0, len(data)))
            data[at] = int(rng.integers(0, 256))
        if i % 7 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        r = post_file(client, bytes(data))
        statuses.append(r.status_code)
        assert r.status_code < 500, (i, r.get_json())
    assert 200 in statuses and any(s >= 400 for s in statuses)


# -- app construction and serving -----------------------------------------------------------------

def test_models_are_loaded_once_per_app_not_per_request(bundle, monkeypatch):
    import serkit.web as web

    calls = []
    real = web.load_model
    monkeypatch.setattr(web, "load_model", lambda path: calls.append(path) or real(path))
    app = create_app({"SERKIT_MODELS": {"a": bundle, "b": bundle}})
    client = app.test_client()
    for name in ("a", "b", "a", "b"):
        assert post_file(client, audio_bytes(0.5), model=name).get_json()["model"] == name
    assert len(calls) == 2


def test_several_models_and_default_choice(tmp_path, bundle):
    other = make_bundle(tmp_path / "other", seed=1, labels=["neutral", "sad"])
    app = create_app({"SERKIT_MODELS": {"tiny": bundle, "other": other}, "SERKIT_DEFAULT_MODEL": "other"})
    client = app.test_client()
    assert [m["name"] for m in client.get("/api/models").get_json()["models"]] == ["tiny", "other"]
    assert list(post_file(client, audio_bytes(0.5)).get_json()["probabilities"]) == ["neutral", "sad"]
    assert post_file(client, audio_bytes(0.5), model="tiny").get_json()["model"] == "tiny"


def test_bad_configuration_fails_at_start(tmp_path, bundle):
    with pytest.raises(ValueError, match="default model"):
        create_app({"SERKIT_MODELS": {"tiny": bundle}, "SERKIT_DEFAULT_MODEL": "x"})
    with pytest.raises(ValueError, match="no models"):
        create_app({"SERKIT_MODELS": {}})
    with pytest.raises(BundleError):
        create_app({"SERKIT_MODELS": {"x": tmp_path}})


def test_model_specs_for_serve(tmp_path, bundle):
    run = make_bundle(tmp_path / "run7" / "bundle")
    specs = parse_model_specs([str(bundle), str(run), f"cnn={bundle}"])
    assert specs == {"tiny": bundle, "run7": run, "cnn": bundle}
    # the name reports, tables and batch rows give it too
    assert load_model(run, warmup=False).name == "run7" and load_model(bundle, warmup=False).name == "tiny"
    assert parse_model_specs([]) is None
    with pytest.raises(ValueError, match="two models"):
        parse_model_specs([str(bundle), f"tiny={run}"])
    with pytest.raises(FileNotFoundError, match="or a shipped model: default, fast"):
        parse_model_specs([str(tmp_path / "missing")])
    shipped = parse_model_specs(["fast", "mine=default"])           # shipped models by name
    assert list(shipped) == ["fast", "mine"] and all((f / "config.json").is_file() for f in shipped.values())


def test_serve_subcommand_parses(monkeypatch):
    import serkit.web.serve as serve_mod
    from serkit.cli import main

    seen = {}
    monkeypatch.setattr(serve_mod, "serve", lambda settings, **kw: seen.update(vars(settings)))
    assert main(["serve", "-m", "a", "--model", "b=c", "--port", "8123", "--threads", "2"]) == 0
    assert seen["models"] == ["a", "b=c"] and seen["port"] == 8123 and seen["threads"] == 2
    assert seen["host"] == "127.0.0.1"

"""Hostile and careless input: tampered bundles, odd file names and CSVs, misbehaving clients.

Everything is generated here under tmp_path (nothing is checked in). Each case asserts the
behaviour the user gets: one readable error naming the file and the key (never a traceback),
a refusal before a large allocation, a server that stays reachable.
The long seeded run of the same kinds of input is benchmarks/fuzz.py.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from rich.console import Console

from serkit import cli
from serkit.audio import (BLOCK_VALUES, MAX_SAMPLES, MAX_SECONDS, AudioError, load_audio,
                          sample_budget)
from serkit.batch import budget_batches
from serkit.bundle import BundleError, load_bundle, read_config, save_bundle
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from serkit.splits import SplitError, split
from serkit.manifest import Utterance

LABELS = ["angry", "happy", "sad"]
SR = 16000
ROOT = Path(__file__).resolve().parents[1]


def make_bundle(folder: Path) -> Path:
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=8))
    return save_bundle(folder, model, LABELS, {"sample_rate": SR, "clip_seconds": 3.0})


def tone(seconds: float = 1.0, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write(path: Path, seconds: float = 1.0, sr: int = SR, channels: int = 1, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sr, channels), sr, **kw)
    return path


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``serkit serve`` sets torch's thread count for its process; the tests here run it in ours."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("hostile") / "tiny")


@pytest.fixture
def copy_of(bundle, tmp_path):
    """A fresh copy of the bundle to tamper with."""
    import shutil

    def make(name: str = "b") -> Path:
        shutil.copytree(bundle, tmp_path / name)
        return tmp_path / name
    return make


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(rc: int, err: str, *needles: str) -> str:
    """The CLI's contract for a user's mistake: exit status 2 and one readable line."""
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ tampered bundles

def _mutate(config: dict, *changes: tuple[list, object]) -> dict:
    """``config`` with each (key path, value) set; the value KeyError deletes the key."""
    config = copy.deepcopy(config)
    for path, value in changes:
        target = config
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return config


CONFIG_CASES = {
    # name: (mutation of the parsed config | raw text, text the error must hold)
    "array": ("[1, 2, 3]", "not an object"),
    "nested arrays": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "huge integer": ('{"format": "serkit-bundle", "format_version": 1' + ", \"x\": 1" + "0" * 5000 + "}", "config.json"),
    "not UTF-8": (b'{"format": "serkit-bundle\xff"}', "config.json"),
    "no audio": ((["audio"], KeyError), "audio: missing"),
    "no model_type": ((["model_type"], KeyError), "model_type: missing"),
    "audio not an object": ((["audio"], [16000, 3.0]), "audio: is a JSON array"),
    "channels a string": ((["model_config", "channels"], "abc"), "model_config.channels: 'abc' is not a list"),
    "lstm_hidden a float": ((["model_config", "lstm_hidden"], 96.5), "model_config.lstm_hidden: 96.5 is not an integer"),
    "n_fft zero": ((["model_config", "n_fft"], 0), "model_config.n_fft: 0 is out of range"),
    "clip_seconds negative": ((["audio", "clip_seconds"], -3), "audio.clip_seconds: -3 is out of range"),
    "clip_seconds zero": ((["audio", "clip_seconds"], 0), "audio.clip_seconds: 0 is out of range"),
    "clip_seconds 1e9": ((["audio", "clip_seconds"], 1e9), "audio.clip_seconds"),
    "lstm_hidden 1e12": ((["model_config", "lstm_hidden"], 10 ** 12), "model_config.lstm_hidden"),
    "channels 1e12": ((["model_config", "channels"], [10 ** 12]), "model_config.channels"),
    "tiny hop, long window": ([(["model_config", "hop_length"], 1), (["audio", "clip_seconds"], 60)],
                              "one 60 s window would make"),
    "win longer than n_fft": ((["model_config", "win_length"], 4000), "win_length"),
    "labels not a list": ((["labels"], "angry,happy,sad"), "labels"),
    "labels repeated": ((["labels"], ["angry", "angry", "sad"]), "angry appear more than once"),
    "label with markup": ((["labels"], ["[red]", "happy", "x" * 500]), "labels[2]"),
    "sample rate a string": ((["audio", "sample_rate"], "16k"), "audio.sample_rate: '16k' is not an integer"),
    "sample rate 1e9": ((["audio", "sample_rate"], 10 ** 9), "audio.sample_rate"),
    "temperature NaN": ((["temperature"], float("nan")), "temperature"),
    "model_config an array": ((["model_config"], [1, 2]), "model_config: is a JSON array"),
    "unknown model type": ((["model_type"], "transformer_xl"), "unknown model type 'transformer_xl'"),
    "format_version a string": ((["format_version"], "1"), "format_version"),
    "training a list": ((["training"], [1]), "training: is a JSON array"),
    "onnx file outside": ((["onnx"], {"files": {"fp32": "../../etc/passwd"}}), "onnx.files.fp32"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_a_tampered_config_is_one_bundle_error_naming_file_and_key(copy_of, case, capsys):
    folder = copy_of()
    change, needle = CONFIG_CASES[case]
    path = folder / "config.json"
    if isinstance(change, bytes):
        path.write_bytes(change)
    elif isinstance(change, str):
        path.write_text(change)
    else:
        changes = change if isinstance(change, list) else [change]
        path.write_text(json.dumps(_mutate(json.loads(path.read_text()), *changes)))
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    assert "config.json" in str(info.value) and needle in str(info.value)
    for argv in (["predict", "-m", folder, folder / "x.wav"], ["info", folder]):
        one_error_line(*run_cli(capsys, *argv)[::2], "config.json")


def test_the_schema_passes_every_bundle_serkit_writes(bundle, copy_of):
    from serkit.inference import default_model_path

    for folder in (bundle, default_model_path()):
        assert read_config(folder)["labels"]
    edited = copy_of()                                       # saved by an editor that writes a BOM
    (edited / "config.json").write_text("\ufeff" + (edited / "config.json").read_text(), encoding="utf-8")
    assert read_config(edited)["labels"] == LABELS


def test_weights_of_another_shape_are_one_line(copy_of, tmp_path, capsys):
    folder = copy_of()
    torch.manual_seed(0)
    wider = save_bundle(tmp_path / "wider", CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)),
                        LABELS, {"sample_rate": SR, "clip_seconds": 3.0})
    (folder / "model.safetensors").write_bytes((wider / "model.safetensors").read_bytes())
    one_error_line(*run_cli(capsys, "predict", "-m", folder, folder / "x.wav")[::2],
                   "weights do not fit the model (size mismatch for lstm.")


@pytest.mark.parametrize("weights", [b"", b"hello, not safetensors" * 10, "half", b"\xff" * 16])
def test_truncated_or_foreign_weights_are_a_bundle_error_also_at_serve_start(copy_of, weights, capsys):
    from serkit.web import create_app

    folder = copy_of()
    real = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(real[: len(real) // 2] if weights == "half" else weights)
    with pytest.raises(BundleError, match="model.safetensors: not a readable safetensors file"):
        load_bundle(folder)
    with pytest.raises(BundleError, match="model.safetensors"):
        create_app({"SERKIT_MODELS": {"x": folder}})
    rc, out, err = run_cli(capsys, "serve", "-m", folder, "--port", "0")
    one_error_line(rc, err, "model.safetensors")
    assert "serving" not in out


def pretrained_bundle(folder: Path, backbone: str) -> Path:
    """A frozen-head pretrained bundle that names ``backbone`` (its weights are never reached:
    the backbone is resolved first)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"head.x": torch.zeros(1)}, str(folder / "model.safetensors"))
    config = {"format": "serkit-bundle", "format_version": 1, "model_type": "pretrained",
              "model_config": {"n_classes": 3, "backbone": backbone, "freeze": "head", "clip_seconds": 1.0},
              "labels": LABELS, "audio": {"sample_rate": SR, "clip_seconds": 1.0}, "temperature": 1.0}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_bundle_cannot_make_loading_hash_any_folder_or_reach_the_network(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    import serkit.models.pretrained as pretrained

    hashed, connected, downloads = [], [], []
    monkeypatch.setattr(pretrained, "weights_checksum", lambda folder: hashed.append(folder) or "sha256:0")

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise OSError("no network in this test")
    monkeypatch.setattr(socket, "create_connection", create_connection)
    import huggingface_hub

    real_download = huggingface_hub.snapshot_download

    def snapshot_download(*args, **kwargs):
        downloads.append(kwargs.get("local_files_only", False))
        return real_download(*args, **kwargs)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("SERKIT_BACKBONE_DIRS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    secret = tmp_path / "home" / "secrets"          # a folder that is not a backbone's place
    secret.mkdir(parents=True)
    (secret / "x.safetensors").write_bytes(b"private")
    for i, (backbone, needle) in enumerate([(str(secret), "SERKIT_BACKBONE_DIRS"), ("/etc", "outside the places"),
                                            ("someone/not-cached-model", "never downloads")]):
        folder = pretrained_bundle(tmp_path / f"bundle{i}", backbone)
        with pytest.raises(ValueError, match=needle):
            load_bundle(folder)
        rc, _, err = run_cli(capsys, "predict", "-m", folder, tmp_path / "x.wav")
        one_error_line(rc, err, needle)
    assert hashed == [] and connected == [] and all(downloads)    # nothing hashed, no network, cache only


def test_a_backbone_in_an_allowed_place_loads(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from synth import make_backbone

    from serkit.models.pretrained import PretrainedConfig, PretrainedSER

    backbone = make_backbone(tmp_path / "models", "wav2vec2")
    model = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(backbone), clip_seconds=0.5))  # the user's own
    folder = save_bundle(tmp_path / "run" / "bundle", model, LABELS, {"sample_rate": SR, "clip_seconds": 0.5})
    monkeypatch.delenv("SERKIT_BACKBONE_DIRS", raising=False)
    with pytest.raises(ValueError, match="outside the places a bundle may name"):
        load_bundle(folder)
    monkeypatch.setenv("SERKIT_BACKBONE_DIRS", os.pathsep.join(["/nowhere", str(tmp_path / "models")]))
    loaded, _ = load_bundle(folder)
    assert loaded.config.backbone == str(backbone.resolve())


# ------------------------------------------------------------------------------ CLI: names, paths, CSVs

@pytest.fixture
def wide_console(monkeypatch):
    """The CLI's table console, wide enough that no file name wraps, writing to a buffer."""
    buf = io.StringIO()
    monkeypatch.setattr(cli.common, "console", Console(file=buf, width=400, color_system=None))
    return buf


def test_file_names_with_brackets_are_files_and_print_as_they_are(bundle, tmp_path, wide_console, capsys):
    take = write(tmp_path / "interview [take 2].wav")
    odd = write(tmp_path / "a[" / "]b.wav")                 # the path a[/]b.wav
    markup = write(tmp_path / "[bold]x[/bold].wav")
    rc, _, err = run_cli(capsys, "predict", "-m", bundle, take, odd, markup)
    assert rc == 0, err
    table = wide_console.getvalue()
    assert f"files in {tmp_path}:" in table            # the folder once, then each name relative to it
    for f in (take, odd, markup):
        assert str(f.relative_to(tmp_path)) in table
    rc, out, err = run_cli(capsys, "predict", "-m", bundle, take, "-f", "csv")
    assert rc == 0 and out.splitlines()[1].startswith(f'"{take}"') or out.splitlines()[1].startswith(str(take))
    # a pattern still expands when no file has its literal name
    rc, out, err = run_cli(capsys, "predict", "-m", bundle, str(tmp_path / "interview*.wav"), "-f", "json")
    assert rc == 0 and json.loads(out)[0]["file"] == str(take)


def test_a_file_name_that_is_not_utf8_is_named_not_an_abort(bundle, tmp_path, capsys):
    root = tmp_path / "corpus"
    write(root / "Actor_01" / "03-01-05-01-01-01-01.wav")
    write(root / "Actor_02" / "03-01-04-01-01-01-02.wav")
    bad = os.fsencode(root / "Actor_01") + b"/bad\xe9name.wav"
    try:
        with open(bad, "wb") as fh:
            fh.write((root / "Actor_01" / "03-01-05-01-01-01-01.wav").read_bytes())
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    rc, out, err = run_cli(capsys, "prepare", root, "-o", tmp_path / "m.csv", "-v")
    assert rc == 0, err
    skipped = (tmp_path / "m.skipped.csv").read_text(encoding="utf-8")
    assert "bad\\xe9name.wav" in skipped and "not UTF-8" in skipped
    assert len((tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()) == 3
    rc, out, err = run_cli(capsys, "predict", "-m", bundle, root, "-f", "csv")
    assert rc == 0 and len(out.splitlines()) == 4 and "Traceback" not in err


def test_latin1_and_huge_field_csvs_are_one_error_line(bundle, tmp_path, capsys):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,emotion,speaker\ncaf\xe9.wav,angry,s1\n".encode("latin-1"))
    huge = tmp_path / "huge.csv"
    huge.write_text("path,emotion\n" + "x" * 200_000 + ".wav,angry\n")
    for argv, needle in [(["prepare", latin, "-o", tmp_path / "m.csv"], "not UTF-8 text (line 2: byte 0xe9)"),
                         (["predict", "-m", bundle, latin], "not UTF-8"),
                         (["prepare", huge, "-o", tmp_path / "m.csv"], "field larger than field limit"),
                         (["predict", "-m", bundle, huge], "field larger")]:
        one_error_line(*run_cli(capsys, *argv)[::2], str(argv[1] if argv[0] == "prepare" else argv[3]), needle)
    assert not (tmp_path / "m.csv").exists()


def test_output_naming_a_folder_is_refused_before_any_work(bundle, tmp_path, capsys):
    clip = write(tmp_path / "a.wav")
    folder = tmp_path / "out.csv"
    folder.mkdir()
    (tmp_path / "out.json").mkdir()
    for argv in (["predict", "-m", bundle, clip, "-o", folder],
                 ["predict", "-m", bundle, clip, "--timeline", "-o", tmp_path / "out.json"],
                 ["prepare", tmp_path, "-o", folder]):
        one_error_line(*run_cli(capsys, *argv)[::2], "is a folder; name a file")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("argv", [["--torch-threads", "-3"], ["--max-upload-mb", "-1"], ["--port", "99999"],
                                  ["--threads", "0"], ["--channel-timeout", "0"], ["--connection-limit", "x"]])
def test_serve_options_out_of_range_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", *argv])
    assert info.value.code == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_before_serving_is_announced(bundle, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out, err = run_cli(capsys, "serve", "-m", bundle, "--port", port, "--vad", "none")
    one_error_line(rc, err, f"--port {port}", "cannot listen")
    assert "serving" not in out


def test_a_closed_pipe_ends_predict_quietly(bundle, tmp_path):
    clips = [write(tmp_path / f"c{i}.wav", seconds=0.5) for i in range(3)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "serkit", "predict", "-m", str(bundle), *map(str, clips), "-f", "csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()                     # like `| head -0`: the reader is gone before the first row
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0 and err == "", err


def test_too_few_speakers_or_clips_are_split_errors_that_say_what_to_do():
    def u(speaker: str, emotion: str) -> Utterance:
        return Utterance("c", speaker, emotion, Path(f"/x/{speaker}-{emotion}.wav"))
    few = [u("s1", "angry"), u("s2", "happy"), u("s3", "happy"), u("s4", "angry"), u("s5", "sad")]
    for protocol in ("random", "speaker"):
        with pytest.raises(SplitError) as info:
            split(few, protocol)
        message = str(info.value)
        assert "sad 1" in message and "--emotions" in message
        assert "n_splits" not in message and "least populated" not in message


# ------------------------------------------------------------------------------ the web API

@pytest.fixture(scope="module")
def client(bundle):
    from serkit.web import create_app

    return create_app({"SERKIT_MODELS": {"tiny": bundle}, "SERKIT_TIMELINE_VAD": "none"}).test_client()


def post_file(client, data: bytes):
    return client.post("/api/predict", data={"file": (io.BytesIO(data), "x.wav")}, content_type="multipart/form-data")


def test_many_tiny_multipart_parts_are_not_called_too_large(client):
    body = b"".join(f'--xx\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode() for i in range(1500))
    r = client.post("/api/predict", data=body + b"--xx--\r\n", content_type="multipart/form-data; boundary=xx")
    assert r.status_code == 400 and r.get_json()["error"] == "bad_request"
    assert "MiB" not in r.get_json()["message"] and "parts" in r.get_json()["message"]


def test_a_malformed_multipart_body_is_bad_request_not_no_file(client):
    cut = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    r = client.post("/api/predict", data=cut, content_type="multipart/form-data; boundary=xx")
    assert r.status_code == 400 and r.get_json()["error"] == "bad_request"
    # a whole body without a file part is still "no_file"
    r = client.post("/api/predict", data={"model": "tiny"}, content_type="multipart/form-data")
    assert r.get_json()["error"] == "no_file"


def test_truncated_vorbis_and_header_only_wav_are_corrupt_not_short(client):
    buf = io.BytesIO()
    sf.write(buf, tone(2.0), SR, format="OGG", subtype="VORBIS")
    vorbis = buf.getvalue()
    header = b"RIFF" + struct.pack("<I", 36 + 32000) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, SR, 2 * SR, 2, 16) \
        + b"data" + struct.pack("<I", 32000)
    cuts = [vorbis[: int(len(vorbis) * f)] for f in (0.2, 0.35, 0.5)]
    for data in (*cuts, header):
        body = post_file(client, data).get_json()
        assert body["status"] == 400 and body["error"] == "undecodable", body
        assert "truncated" in body["message"] and "corrupt" in body["message"] and "s long" not in body["message"]


# ------------------------------------------------------------------------------ bounded resources

def test_every_decode_has_the_web_sample_budget(tmp_path, monkeypatch):
    assert MAX_SAMPLES == sample_budget(MAX_SECONDS)      # one budget: max_seconds of 48 kHz stereo
    path = write(tmp_path / "wide.flac", seconds=1.0, sr=48000, channels=8)   # 384,000 samples x channels

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header shows it is over the budget")
    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioError, match=r"384,000 samples, more than the 300,000 decoded at once.*--timeline"):
        load_audio(path, max_samples=300_000)


def test_multichannel_audio_is_decoded_in_blocks_to_the_same_result(tmp_path, monkeypatch):
    import soxr

    import serkit.audio as audio

    path = write(tmp_path / "st.wav", seconds=2.0, sr=44100, channels=3, subtype="FLOAT")
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    expected = soxr.resample(data.mean(axis=1), 44100, SR, quality="HQ")
    reads = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(audio, "BLOCK_VALUES", 3 * 10_000)
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, **kw: reads.append(frames) or real_read(self, frames, **kw))
    np.testing.assert_array_equal(load_audio(path), expected)
    assert max(reads) == 10_000 and len(reads) > 8          # 10,000 frames x 3 channels per block
    assert BLOCK_VALUES >= 1 << 20


def test_batches_are_bounded_by_their_audio_not_only_their_count(tmp_path):
    short = [write(tmp_path / f"s{i}.wav", seconds=1.0, sr=1000) for i in range(5)]
    files = [str(f) for f in short]
    assert [len(g) for g in budget_batches(files, batch_size=2)] == [2, 2, 1]
    assert [len(g) for g in budget_batches(files, batch_size=10, max_seconds=2.5)] == [2, 2, 1]
    groups = list(budget_batches([*files[:2], str(tmp_path / "missing.wav")], batch_size=10, max_seconds=1.5))
    assert groups == [[0], [1, 2]]                           # an unreadable file costs nothing here


def test_a_file_over_the_cap_is_refused_with_a_pointer_to_timeline(bundle, tmp_path, capsys):
    path = tmp_path / "long.wav"                             # 21 minutes at 1 kHz, 8-bit: 1.3 MB
    with sf.SoundFile(str(path), "w", samplerate=1000, channels=1, subtype="PCM_U8") as f:
        for _ in range(21):
            f.write(np.zeros(60_000, np.float32))
    rc, out, err = run_cli(capsys, "predict", "-m", bundle, path, "-f", "json")
    row = json.loads(out)[0]
    assert rc == 1 and row["emotion"] is None and "--timeline" in row["error"] and "1200 s limit" in row["error"]


def start_server(bundle: Path, *options: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "serkit", "serve", "-m", str(bundle), "--port", "0",
                             "--vad", "none", *options], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = proc.stdout.readline().decode()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no serving line: {line!r}")
    return proc, int(match.group(1))


def healthz(port: int, timeout: float) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def test_idle_connections_and_slowloris_cannot_keep_the_server_down(bundle):
    proc, port = start_server(bundle)                        # the defaults: 100 idle connections are nothing
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        assert healthz(port, timeout=10) == 200
        for s in idle:
            s.close()
    finally:
        proc.terminate()
        proc.wait(30)

    proc, port = start_server(bundle, "--connection-limit", "5", "--channel-timeout", "2",
                              "--request-timeout", "2", "--cleanup-interval", "1")
    try:
        for attack in ("idle", "slowloris"):
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
            if attack == "slowloris":                        # headers that never end, a byte at a time
                stop = time.monotonic() + 30
                for s in clients:
                    s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n")

                def trickle():
                    while time.monotonic() < stop:
                        for s in clients:
                            try:
                                s.sendall(b"X")
                            except OSError:
                                pass
                        time.sleep(0.3)
                import threading
                threading.Thread(target=trickle, daemon=True).start()
            assert healthz(port, timeout=25) == 200          # answered once the server drops them
            for s in clients:
                s.settimeout(10)
                try:
                    assert s.recv(1) in (b"", b"H")          # closed by the server (or told why)
                except OSError:
                    pass
                s.close()
    finally:
        proc.terminate()
        proc.wait(30)

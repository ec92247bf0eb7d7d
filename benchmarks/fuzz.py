"""Fuzz serkit as a hostile or careless user would: a live server and the CLI, seeded and bounded.

    python benchmarks/fuzz.py [--cases 10000] [--cli-share 0.1] [--seed 0] [--timeout 60] [--json out.json]

Everything happens in a temporary folder, against a tiny random CNN-LSTM bundle made here, and
the server listens on 127.0.0.1 only.

- HTTP (``1 - cli-share`` of the cases): ``serkit serve`` gets the mutated uploads of
  ``benchmarks/load.py`` (flipped bytes, truncations, wild WAV headers, random bytes, lying
  headers, hostile file names, odd content types and model names, broken multipart framing) plus
  header-only and truncated files, 1,500-part forms, a malformed multipart body and float audio
  of absurd amplitude. Outcomes: ``ok`` (200, strict JSON, finite numbers), ``expected error``
  (4xx with the JSON error shape), ``5xx``, ``bad answer`` (not strict JSON, NaN, or no emotion without a reason), ``connection
  error``, ``hang`` (no answer within ``--timeout``); and the tracebacks in the server's log.
- CLI (``cli-share``): ``serkit predict`` (table, CSV, JSON, timelines, batch outputs),
  ``prepare``, ``info``, ``evaluate``, ``export`` and ``serve`` on hostile file names (markup,
  globs, brackets, non-UTF-8 bytes, newlines, FIFOs, folders called ``x.wav``, symlink loops),
  mutated audio, bad CSV lists (Latin-1, huge fields, random bytes), tampered bundles (config keys
  set to hostile values, deleted, nested, truncated or foreign weights) and out-of-range options;
  some cases aim outputs at the user's own files. The cases run through ``serkit.cli.main`` in a
  worker process (one import of torch, not one per case), and every ``--subprocess-every``-th case
  also as a real ``python -m serkit`` command. Outcomes: ``ok`` (exit 0), ``expected error`` (exit
  1 with per-file errors, or exit 2 with one ``error:`` line or a usage message), ``traceback``,
  ``messy error`` (exit 2 without exactly one ``error:`` line), ``bad output`` (``-f json``
  output that is not strict JSON), ``hang`` and ``user file changed`` (a file in the user's
  folder whose bytes changed).

Exits 1 when any case ends in a traceback, 5xx, bad answer or output, messy error, hang,
connection error or changed user file.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import http.client
import io
import json
import math
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Client, HOST, encode, fuzz_request, multipart, mutate, seeds, speechlike, wav_header  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["angry", "happy", "sad"]
BAD = ("traceback", "5xx", "bad answer", "bad output", "messy error", "hang", "connection error", "user file changed")


# ----------------------------------------------------------------------------- the workspace

HOSTILE_NAMES = ["interview [take 2].wav", "[bold]loud[/bold].wav", "a[/]b.wav", "*.wav", "?.wav", "[!x].wav",
                 "-h.wav", "--model.wav", "with space .wav", "ünïcödé 🎵.flac", "quote'\"s.wav", "new\nline.wav",
                 "tab\there.wav", ("x" * 240) + ".wav", ".hidden.wav", "..wav", "CON.wav", "%s%d.wav",
                 "$(rm -rf ~).wav", "semi;colon.wav", "back\\slash.wav", "emoji\u200b.wav", "rtl\u202eva.wav"]


def build_workspace(root: Path, seed: int) -> dict:
    """The bundle, the user's files (which must never change), hostile inputs and a scratch folder."""
    import torch

    from serkit.bundle import save_bundle
    from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig

    torch.manual_seed(seed)
    bundle = save_bundle(root / "bundle", CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=8)),
                         LABELS, {"sample_rate": 16000, "clip_seconds": 3.0})
    user = root / "user"
    (user / "photos").mkdir(parents=True)
    clips = []
    for i in range(6):
        clips.append(user / f"clip{i}.wav")
        clips[-1].write_bytes(encode(speechlike(1.0 + i, seed + i)))
    (user / "long.wav").write_bytes(encode(speechlike(12.0, seed)))
    (user / "thesis.txt").write_text("four years of work\n")
    (user / "photos" / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (user / "results.csv").write_text("my,own,table\n1,2,3\n")
    (user / "timeline.json").write_text('{"mine": true}\n')
    (user / "list.csv").write_text("path,emotion,speaker\n" + "".join(
        f"{c.name},{LABELS[i % 3]},s{i % 4}\n" for i, c in enumerate(clips)))
    hostile = root / "hostile"
    hostile.mkdir()
    for name in HOSTILE_NAMES:
        path = hostile / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(clips[0].read_bytes())
    with contextlib.suppress(OSError):
        (hostile / os.fsdecode(b"latin\xe9.wav")).write_bytes(clips[1].read_bytes())
    os.mkfifo(hostile / "fifo.wav")
    (hostile / "folder.wav").mkdir()
    (hostile / "loop").symlink_to(hostile / "loop")
    (hostile / "up").symlink_to(root)
    (hostile / "empty.wav").write_bytes(b"")
    (hostile / "text.wav").write_text("not audio")
    return {"bundle": bundle, "user": user, "hostile": hostile, "clips": clips, "root": root}


def snapshot(folder: Path) -> dict[str, str]:
    """sha1 of every regular file under ``folder`` (the user's files)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- bad bundles

HOSTILE_VALUES = [None, -1, 0, 1e308, -1e308, 2 ** 63, "abc", "", [], {}, [[[[]]]], True, float("nan"),
                  float("inf"), "x" * 10000, [10 ** 12], 96.5, [16, "a"], {"a": 1}]


def bad_bundle(rng: random.Random, ws: dict, folder: Path) -> Path:
    shutil.copytree(ws["bundle"], folder)
    config = json.loads((folder / "config.json").read_text())
    how = rng.random()
    if how < 0.55:                                        # one key set to a hostile value
        section = rng.choice(["model_config", "audio", None, None])
        target = config[section] if section else config
        key = rng.choice(sorted(target) + ["new_key"])
        target[key] = rng.choice(HOSTILE_VALUES)
        text = json.dumps(config)
    elif how < 0.7:                                       # a key deleted
        section = rng.choice(["model_config", "audio", None])
        target = config[section] if section else config
        del target[rng.choice(sorted(target))]
        text = json.dumps(config)
    elif how < 0.8:                                       # the file itself broken
        text = rng.choice(["[" * 50_000 + "]" * 50_000, "[]", "null", '"x"', "{", json.dumps(config)[:rng.randrange(200)],
                           "1" + "0" * 5000, "\ufeff" + json.dumps(config)])
    else:
        text = json.dumps(config)
        weights = folder / "model.safetensors"
        data = bytearray(weights.read_bytes())
        choice = rng.random()
        if choice < 0.3:
            data = data[: rng.randrange(len(data))]
        elif choice < 0.6:
            for _ in range(rng.choice([1, 8, 64])):
                data[rng.randrange(min(len(data), 512))] = rng.randrange(256)
        elif choice < 0.8:
            data = bytearray(rng.randbytes(rng.choice([0, 8, 100, 5000])))
        else:
            big = dict(config, model_config=dict(config["model_config"], lstm_hidden=16))
            (folder / "config.json").write_text(json.dumps(big))       # weights of another shape
            text = json.dumps(big)
        weights.write_bytes(bytes(data))
    (folder / "config.json").write_text(text)
    return folder


# ----------------------------------------------------------------------------- CLI cases

def bad_csv(rng: random.Random, ws: dict, path: Path) -> Path:
    clips = [str(c) for c in ws["clips"]]
    how = rng.random()
    if how < 0.2:
        path.write_bytes("path,emotion,speaker\ncafé.wav,angry,s1\n".encode("latin-1"))
    elif how < 0.35:
        path.write_text("path,emotion\n" + "x" * 200_000 + ",angry\n")
    elif how < 0.5:
        path.write_bytes(rng.randbytes(rng.choice([0, 10, 3000])))
    elif how < 0.65:
        path.write_text("File,Emotion\n" + "\n".join(f"{c},{rng.choice(LABELS)}" for c in clips))
    else:
        rows = [[rng.choice(clips + [str(ws["hostile"] / rng.choice(HOSTILE_NAMES)), "", "/etc/passwd",
                                     str(ws["hostile"] / "fifo.wav"), "../" * 20 + "x.wav"]),
                 rng.choice(LABELS + ["", "ANGRY", "joy", "[red]"]), rng.choice(["s1", "s2", "", "unknown"])]
                for _ in range(rng.randint(0, 8))]
        import csv
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(rng.choice([["path", "emotion", "speaker"], ["file", "label"], ["a", "b"]]))
            w.writerows(rows)
    return path


def cli_case(rng: random.Random, ws: dict, k: int) -> list[str]:
    """One seeded command line."""
    scratch = ws["root"] / "scratch" / f"{k:05d}"
    scratch.mkdir(parents=True)
    hostile = [str(ws["hostile"] / n) for n in rng.sample(HOSTILE_NAMES, rng.randint(1, 4))]
    extra = [str(ws["hostile"] / n) for n in rng.sample(["fifo.wav", "folder.wav", "loop", "empty.wav", "text.wav"],
                                                        rng.randint(0, 2))]
    model = ["-m", str(ws["bundle"])]
    kind = rng.random()
    if kind < 0.25:                                          # hostile names
        argv = ["predict", *model, *hostile, *extra, "-f", rng.choice(["table", "json", "csv"])]
        if rng.random() < 0.2:
            argv.append(str(ws["hostile"]))
    elif kind < 0.4:                                         # mutated audio
        files = []
        for i in range(rng.randint(1, 3)):
            f = scratch / f"m{i}.{rng.choice(['wav', 'flac', 'ogg', 'mp3'])}"
            f.write_bytes(mutate(rng, SEED_FILES))
            files.append(str(f))
        argv = ["predict", *model, *files, "-f", rng.choice(["table", "json", "csv"])]
        if rng.random() < 0.3:
            argv += ["-o", str(scratch / rng.choice(["out.csv", "out.jsonl"])), "--no-progress"]
    elif kind < 0.6:                                         # tampered bundles
        folder = bad_bundle(rng, ws, scratch / "bundle")
        argv = rng.choice([["predict", "-m", str(folder), str(ws["clips"][0]), "-f", "json"],
                           ["info", str(folder)],
                           ["serve", "-m", str(folder), "--port", str(BUSY_PORT)],
                           ["evaluate", str(folder), str(ws["user"] / "list.csv")]])
    elif kind < 0.7:                                         # bad CSV lists
        listed = bad_csv(rng, ws, scratch / "list.csv")
        argv = rng.choice([["prepare", str(listed), "-o", str(scratch / "m.csv")],
                           ["predict", *model, str(listed), "-f", "json"]])
    elif kind < 0.78:                                        # prepare over hostile folders
        argv = ["prepare", str(ws["hostile"]), "-o", str(scratch / "m.csv"), *(["-v"] if rng.random() < 0.5 else [])]
    elif kind < 0.86:                                        # timelines
        argv = ["predict", *model, str(ws["user"] / "long.wav"), *rng.sample(hostile, 1), "--timeline",
                "--vad", rng.choice(["none", "energy"]), "--no-progress", "-f", rng.choice(["table", "json", "csv"])]
        if rng.random() < 0.3:
            argv += rng.choice([["--max-segment", rng.choice(["0", "-1", "0.01", "1e9", "nan"])],
                                ["--segment-seconds", rng.choice(["0", "-3", "0.001", "nan", "1e9"])]])
    elif kind < 0.94:                                        # out-of-range options
        argv = rng.choice([
            ["predict", *model, str(ws["clips"][0]), "--batch-size", rng.choice(["0", "-1", "x", "1e9"])],
            ["predict", *model, str(ws["clips"][0]), "-o", str(scratch / "o.csv"), "--workers", rng.choice(["-1", "x"])],
            ["serve", "--port", rng.choice(["99999", "-1", "x"])], ["serve", "--torch-threads", "-3"],
            ["serve", "--max-upload-mb", "-1"], ["serve", "--threads", "0"],
            ["predict", *model, str(ws["clips"][0]), "--runtime", "onnx"],
            ["predict", "-m", "/nonexistent", str(ws["clips"][0])],
            ["predict", *model, rng.choice(["/nonexistent/*.wav", "[", "**/*.nothing"])],
            ["export", str(ws["bundle"]), "-o", str(scratch / "x")], ["info", "/etc"]])
    else:                                                    # outputs aimed at the user's own files
        user = ws["user"]
        argv = rng.choice([
            ["predict", *model, str(ws["clips"][0]), "-o", str(user / "results.csv")],
            ["predict", *model, str(ws["clips"][0]), "--timeline", "--vad", "none", "-o", str(user / "timeline.json")],
            ["prepare", str(user / "list.csv"), "-o", str(user / "list.csv")],
            ["predict", *model, str(ws["clips"][0]), "--timeline", "--vad", "none", "--plot", str(user / "photos" / "cat.png")],
            ["export", str(ws["bundle"]), "--onnx", "--exporter", "torchscript", "-o", str(user / "photos")],
            ["predict", *model, str(ws["clips"][0]), "-o", str(user / "thesis.txt")]])
    return argv


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException, so that the CLI's own error handling cannot catch it."""


def run_in_process(argv: list[str], timeout: float) -> dict:
    """Worker side: ``serkit.cli.main(argv)`` with captured output and an alarm for hangs."""
    from serkit import cli

    out, err = io.StringIO(), io.StringIO()
    result = {"rc": None, "exception": None}

    def alarm(signum, frame):
        raise CaseTimeout()
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(max(1, int(timeout)))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result["rc"] = cli.main(argv)
    except SystemExit as exc:                 # argparse's usage errors
        result["rc"] = exc.code if isinstance(exc.code, int) else 2
    except CaseTimeout:
        result["exception"] = "hang"
    except BaseException:                     # what a user would see as a traceback
        result["exception"] = traceback.format_exc(limit=-3)
    finally:
        signal.alarm(0)
    result.update(stdout=out.getvalue()[-20000:], stderr=err.getvalue()[-4000:])
    return result


def classify(argv: list[str], r: dict, python_stderr_only: bool = True) -> str:
    """The outcome of one CLI case. ``python_stderr_only``: the case ran in the worker, whose
    captured stderr holds only what Python wrote (not a C library's own notes on fd 2), so a
    user's mistake must show there as exactly one ``error:`` line."""
    if r["exception"] == "hang":
        return "hang"
    if r["exception"] or "Traceback (most recent call last)" in r["stderr"]:
        return "traceback"
    rc = r["rc"]
    if rc in (0, 1) and "-f" in argv and argv[argv.index("-f") + 1] == "json" and r["stdout"].strip():
        try:
            json.loads(r["stdout"], parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError:
            return "bad output"
    if rc == 0:
        return "ok"
    lines = [line for line in r["stderr"].splitlines() if line.strip()]
    if rc == 2 and python_stderr_only and not any(line.startswith("usage:") for line in lines) \
            and (len(lines) != 1 or not lines[0].startswith("error: ")):
        return "messy error"
    if rc in (1, 2):
        return "expected error"
    return "traceback"


def worker_main() -> int:
    """``fuzz.py --cli-worker``: read {"argv", "timeout"} lines, answer one result line each."""
    os.environ["COLUMNS"] = "120"
    for line in sys.stdin:
        case = json.loads(line)
        os.chdir(case["cwd"])
        r = run_in_process(case["argv"], case["timeout"])
        sys.__stdout__.write(json.dumps(r) + "\n")
        sys.__stdout__.flush()
    return 0


class Worker:
    """The parent's handle on the worker process; restarted after a hang it could not end."""

    def __init__(self):
        self.proc = None

    def run(self, argv: list[str], cwd: Path, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, __file__, "--cli-worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                         env=ENV)
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout + 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            return {"rc": None, "exception": "hang", "stdout": "", "stderr": ""}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def run_subprocess(argv: list[str], cwd: Path, timeout: float) -> dict:
    try:
        p = subprocess.run([sys.executable, "-m", "serkit", *argv], cwd=cwd, capture_output=True, timeout=timeout,
                           env=ENV)
    except subprocess.TimeoutExpired:
        return {"rc": None, "exception": "hang", "stdout": "", "stderr": ""}
    return {"rc": p.returncode, "exception": None, "stdout": p.stdout.decode(errors="replace")[-20000:],
            "stderr": p.stderr.decode(errors="replace")[-4000:]}


def run_cli_cases(ws: dict, count: int, seed: int, timeout: float, every: int) -> dict:
    rng = random.Random(seed)
    outcomes: collections.Counter = collections.Counter()
    by_command: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[str, list[str]] = collections.defaultdict(list)
    worker, before = Worker(), snapshot(ws["user"])
    started = time.perf_counter()
    try:
        for k in range(count):
            argv = cli_case(rng, ws, k)
            runs = [("in-process", worker.run(argv, ws["root"], timeout))]
            if every and k % every == 0:
                runs.append(("subprocess", run_subprocess(argv, ws["root"], timeout + 30)))
            for how, r in runs:
                outcome = classify(argv, r, python_stderr_only=how == "in-process")
                after = snapshot(ws["user"])
                if after != before:
                    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
                    outcome = "user file changed"
                    r["stderr"] += f"\nchanged: {changed}"
                    restore_user_files(ws)
                    after = snapshot(ws["user"])
                before = after
                outcomes[outcome] += 1
                by_command[argv[0]][outcome] += 1
                if outcome in BAD and len(examples[outcome]) < 6:
                    examples[outcome].append(f"[{how}] serkit {' '.join(map(repr, argv))}\n"
                                             f"    {(r['exception'] or r['stderr']).strip()[-600:]}")
    finally:
        worker.close()
    return {"cases": sum(outcomes.values()), "seconds": round(time.perf_counter() - started, 1),
            "outcomes": dict(outcomes), "by_command": {k: dict(v) for k, v in by_command.items()},
            "examples": dict(examples)}


def restore_user_files(ws: dict) -> None:
    """Put the user's folder back as it was (so one changed file is counted once)."""
    shutil.rmtree(ws["user"])
    shutil.copytree(ws["root"] / "user.orig", ws["user"], symlinks=True)


# ----------------------------------------------------------------------------- HTTP cases

def special_upload(rng: random.Random) -> tuple[str, bytes, str]:
    """What load.py's fuzz does not send: many parts, cut framing, header-only and absurd audio."""
    how = rng.random()
    if how < 0.25:
        parts = rng.choice([999, 1001, 1500, 5000])
        body = b"".join(f'--b\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode() for i in range(parts))
        return "/api/predict", body + b"--b--\r\n", "multipart/form-data; boundary=b"
    if how < 0.45:
        body, ctype = multipart(encode(speechlike(1.0, rng.randrange(100))))
        return "/api/predict", body[: rng.randrange(len(body))], ctype
    if how < 0.65:
        return "/api/predict", wav_header(rng.choice([0, 100, 32000, 2 ** 31]), 16000, 1, 16), "application/octet-stream"
    if how < 0.85:
        x = (rng.choice([1e18, 1e30, 3e38, 1e-30]) * np.sin(np.arange(16000) / 5)).astype(np.float32)
        body, ctype = multipart(encode(x, subtype="FLOAT"))
        return "/api/predict", body, ctype
    data = encode(speechlike(2.0, rng.randrange(100)), fmt="OGG", subtype="VORBIS")
    return "/api/predict", data[: rng.randrange(len(data))], "audio/ogg"


def strict_json(payload: bytes):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(payload, parse_constant=refuse)


def classify_http(status: int, payload: bytes) -> str:
    if status >= 500:
        return "5xx"
    try:
        body = strict_json(payload)
    except ValueError:
        return "expected error" if status == 413 and b"Request Entity Too Large" in payload else "bad answer"
    if status == 200:   # an emotion with finite probabilities, or (no speech) none and a reason
        probs = body.get("probabilities", {})
        ok = probs and all(isinstance(v, (int, float)) and math.isfinite(v) for v in probs.values())
        no_speech = body.get("emotion") is None and probs == {} and isinstance(body.get("reason"), str)
        return "ok" if ok or no_speech else "bad answer"
    if 400 <= status < 500 and isinstance(body, dict) and {"status", "error", "message"} <= set(body):
        return "expected error"
    return "bad answer"


def run_http_cases(port: int, count: int, seed: int, timeout: float) -> dict:
    rng = random.Random(seed + 1)
    files = seeds()
    outcomes: collections.Counter = collections.Counter()
    statuses: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    client = Client(port, timeout=timeout)
    started = time.perf_counter()
    for _ in range(count):
        path, body, ctype = special_upload(rng) if rng.random() < 0.15 else fuzz_request(rng, files)
        try:
            status, payload = client.post(path, body, ctype)
            outcome = classify_http(status, payload)
            statuses[status] += 1
        except socket.timeout:
            outcome, status, payload = "hang", None, b""
        except (OSError, http.client.HTTPException) as exc:
            outcome, status, payload = "connection error", None, repr(exc).encode()
        outcomes[outcome] += 1
        if outcome in BAD and len(examples[outcome]) < 6:
            examples[outcome].append(f"{status} {ctype[:60]} {len(body)} bytes -> {payload[:300]!r}")
    client.close()
    return {"cases": sum(outcomes.values()), "seconds": round(time.perf_counter() - started, 1),
            "outcomes": dict(outcomes), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "examples": dict(examples)}


def start_server(bundle: Path, log: Path) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "serkit", "serve", "-m", str(bundle), "--host", HOST, "--port", "0",
           "--vad", "energy", "--threads", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, env=ENV)
    line = proc.stdout.readline()
    try:
        port = int(line.split(f"http://{HOST}:")[1].split("/")[0])
    except (IndexError, ValueError):
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}\n{log.read_text()}") from None
    return proc, port


# ----------------------------------------------------------------------------- main

SEED_FILES: list[bytes] = []
BUSY_PORT = 0
ENV: dict[str, str] = {}       # the CLI's environment: this checkout, and caches inside the workspace


def main(argv: list[str] | None = None) -> int:
    global SEED_FILES, BUSY_PORT, ENV
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases in all (default: %(default)s)")
    ap.add_argument("--cli-share", type=float, default=0.1, help="share of CLI cases (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60, help="seconds before a case counts as a hang")
    ap.add_argument("--subprocess-every", type=int, default=100,
                    help="also run every N-th CLI case as a real `python -m serkit` (0: never)")
    ap.add_argument("--json", help="also write the counts to this JSON file")
    ap.add_argument("--cli-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cli_worker:
        return worker_main()

    SEED_FILES = seeds()
    cli_cases = round(args.cases * args.cli_share)
    root = Path(tempfile.mkdtemp(prefix="serkit-fuzz-"))
    ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SERKIT_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen()
    BUSY_PORT = busy.getsockname()[1]           # `serve` cases that would start find their port taken
    report: dict = {"seed": args.seed, "cases": args.cases}
    try:
        ws = build_workspace(root, args.seed)
        shutil.copytree(ws["user"], root / "user.orig", symlinks=True)
        log = root / "server.log"
        proc, port = start_server(ws["bundle"], log)
        try:
            report["http"] = run_http_cases(port, args.cases - cli_cases, args.seed, args.timeout)
            report["server_alive"] = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(30)
        report["server_tracebacks"] = log.read_text(errors="replace").count("Traceback")
        report["cli"] = run_cli_cases(ws, cli_cases, args.seed, args.timeout, args.subprocess_every)
    finally:
        busy.close()
        shutil.rmtree(root, ignore_errors=True)
    for part in ("http", "cli"):
        r = report[part]
        print(f"{part}: {r['cases']} cases in {r['seconds']} s: " + ", ".join(
            f"{k} {v}" for k, v in sorted(r["outcomes"].items(), key=lambda kv: -kv[1])))
        if part == "http":
            print(f"  statuses {r['statuses']}; server alive {report['server_alive']}, "
                  f"tracebacks in its log {report['server_tracebacks']}")
        else:
            for command, counts in sorted(r["by_command"].items()):
                print(f"  {command}: {dict(sorted(counts.items()))}")
        for outcome, lines in r["examples"].items():
            print(f"  {outcome}, e.g.:")
            for line in lines:
                print("    " + line.replace("\n", "\n    "))
    total = collections.Counter(report["http"]["outcomes"]) + collections.Counter(report["cli"]["outcomes"])
    bad = sum(total[k] for k in BAD) + report["server_tracebacks"] + (not report["server_alive"])
    print(f"total: {sum(total.values())} cases: " + ", ".join(f"{k} {total[k]}" for k in
          ("ok", "expected error", *BAD)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("PASS" if bad == 0 else "FAIL")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

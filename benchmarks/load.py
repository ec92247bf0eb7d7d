"""Load and fuzz the real server (``serkit serve`` on waitress) over loopback.

    python benchmarks/load.py [--model BUNDLE] [--clients 8] [--seconds 30] [--threads 4]
                              [--fuzz 5000] [--fuzz-seconds 180] [--json out.json]

1. Starts ``serkit serve`` on 127.0.0.1 at a free port (only loopback, never another host) and
   waits for /healthz.
2. Load: ``--clients`` threads, each on its own keep-alive connection, post 3 s WAV clips (16 kHz
   16-bit mono, multipart like the page) for ``--seconds``. Prints requests/s, latency p50/p90/p99/
   max, the error count (any status other than 200, or a failed connection), and the server's
   resident memory at start, after a warm-up, and at the end.
3. Fuzz: up to ``--fuzz`` uploads (at most ``--fuzz-seconds``) of mutated WAV/FLAC/OGG/MP3 files
   (flipped bytes, truncations, rewritten header fields), random bytes, lying headers, odd file
   names, content types and model names, and malformed multipart bodies. Prints the status counts;
   the run fails (exit 1) on any 5xx, any dropped connection, a dead server, or a traceback in
   the server's log.

Uses the shipped default model unless ``--model`` names another bundle. The client runs on the
same machine as the server, so both share its cores; compare figures only from the same machine.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import io
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HOST = "127.0.0.1"
SR = 16000


# -- the server ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "serkit", "serve", "--host", HOST, "--port", str(port),
           "--threads", str(args.threads), "--torch-threads", str(args.torch_threads)]
    for model in args.model or []:
        cmd += ["--model", model]
    print("server:", " ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not answer /healthz within 180 s")


# -- requests --------------------------------------------------------------------------------------

def multipart(data: bytes, filename: str = "clip.wav", content_type: str = "audio/wav",
              fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = f"----serkit{random.getrandbits(64):016x}"
    parts = []
    for k, v in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode("utf-8", "surrogateescape") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive connection that reconnects after the server closes it."""

    def __init__(self, port: int, timeout: float = 60):
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        try:
            self.conn.request("POST", path, body=body, headers={"Content-Type": content_type})
            r = self.conn.getresponse()
            payload = r.read()
            if r.will_close:
                self.close()
            return r.status, payload
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced-sounding test audio: a gliding harmonic tone with syllable-rate amplitude, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2
    x = 0.2 * x * envelope + 0.01 * rng.standard_normal(len(t))
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


def real_speech(corpora: str, seconds: float) -> list[bytes]:
    """16 RAVDESS clips of real speech, cut or zero-padded to ``seconds`` (the model then runs on
    every request, as it does for users; synthetic tones would be answered "no speech")."""
    import glob

    from serkit.audio import load_audio
    files = sorted(glob.glob(f"{corpora}/ravdess/Actor_*/*.wav"))[::50][:16]
    n = int(seconds * SR)
    return [encode(np.pad(w, (0, max(0, n - len(w))))[:n]) for w in (load_audio(f) for f in files)] if len(files) == 16 else []


def encode(wave: np.ndarray, sr: int = SR, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# -- load ------------------------------------------------------------------------------------------

def run_clients(worker, clients: int) -> float:
    """Run ``worker(k)`` for k in range(clients), each in its own thread; returns the wall time."""
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def run_load(port: int, clips: list[bytes], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(k: int) -> None:
        client, mine, errs, i = Client(port), [], collections.Counter(), k
        while time.perf_counter() < deadline:
            body, ctype = multipart(clips[i % len(clips)])
            i += clients
            t0 = time.perf_counter()
            try:
                status, _ = client.post("/api/predict", body, ctype)
            except (OSError, http.client.HTTPException) as exc:
                errs[type(exc).__name__] += 1
                continue
            mine.append(time.perf_counter() - t0)
            if status != 200:
                errs[str(status)] += 1
        client.close()
        with lock:
            latencies.extend(mine)
            errors.update(errs)

    wall = run_clients(worker, clients)
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")  # noqa: E731
    return {"clients": clients, "seconds": round(wall, 2), "requests": len(ms),
            "requests_per_s": round(len(ms) / wall, 1), "p50_ms": round(pick(0.50), 1),
            "p90_ms": round(pick(0.90), 1), "p99_ms": round(pick(0.99), 1),
            "max_ms": round(ms[-1], 1) if ms else None,
            "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
            "errors": sum(errors.values()), "error_kinds": dict(errors)}


# -- fuzz ------------------------------------------------------------------------------------------

FILENAMES = ["clip.wav", "../../etc/passwd.wav", "/etc/shadow", "..\\..\\boot.ini", "", ".wav",
             "a" * 300 + ".wav", "ünïcödé 🎵.flac", "con.wav", "x.wav\x00.exe", "%2e%2e%2fx.wav",
             "x;rm -rf ~.wav", "<script>.ogg"]
CONTENT_TYPES = ["audio/wav", "audio/x-wav", "application/octet-stream", "text/plain", "image/png",
                 "audio/flac", "", "multipart/form-data", "audio/ogg; codecs=opus"]


def wav_header(data_bytes: int, rate: int, channels: int, bits: int, fmt_tag: int = 1) -> bytes:
    align = max(channels * bits // 8, 0)
    return (b"RIFF" + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, fmt_tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                          (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits & 0xFFFF)
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def seeds() -> list[bytes]:
    w = speechlike(1.0, 99)
    stereo = np.stack([w, w[::-1]], axis=1)
    out = [encode(w), encode(w, fmt="FLAC"), encode(w, fmt="OGG", subtype="VORBIS"),
           encode(np.repeat(w, 3)[:48000], 48000, fmt="OGG", subtype="OPUS"),
           encode(stereo, fmt="WAV", subtype="FLOAT"), encode(w, fmt="AIFF"),
           encode(np.interp(np.arange(44100) * SR / 44100, np.arange(SR), w).astype(np.float32), 44100,
                  fmt="MP3", subtype="MPEG_LAYER_III")]
    return out


def mutate(rng: random.Random, seed_files: list[bytes]) -> bytes:
    choice = rng.random()
    if choice < 0.10:                                    # random bytes
        return rng.randbytes(rng.choice([0, 1, 4, 44, 512, 5000, 60000]))
    if choice < 0.20:                                    # a known signature, then junk
        sig = rng.choice([b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM", b"\xff\xfb", b".snd", b"caff",
                          b"\x1a\x45\xdf\xa3", b"RIFF\x24\x00\x00\x00WAVEfmt "])
        return sig + rng.randbytes(rng.randint(0, 20000))
    if choice < 0.35:                                    # a WAV header with wild fields
        rate = rng.choice([0, 1, 7999, 8000, 16000, 44100, 192000, 2**31 - 1, 2**32 - 1])
        channels = rng.choice([0, 1, 2, 3, 8, 9, 255, 65535])
        bits = rng.choice([0, 1, 8, 16, 24, 32, 64, 65535])
        tag = rng.choice([1, 1, 3, 6, 7, 0xFFFE, 0, 0x55])
        size = rng.choice([0, 100, 32000, 2**31, 2**32 - 1])
        return wav_header(size, rate, channels, bits, tag) + rng.randbytes(rng.choice([0, 10, 2000, 32000]))
    data = bytearray(rng.choice(seed_files))
    for _ in range(rng.choice([1, 2, 4, 16, 64])):      # flipped bytes, mostly near the header
        at = rng.randrange(min(len(data), 256)) if rng.random() < 0.6 else rng.randrange(len(data))
        data[at] = rng.randrange(256)
    if rng.random() < 0.2:
        data = data[: rng.randrange(len(data) + 1)]
    if rng.random() < 0.1:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 500))
    return bytes(data)


def fuzz_request(rng: random.Random, seed_files: list[bytes]) -> tuple[str, bytes, str]:
    data = mutate(rng, seed_files)
    path = "/api/predict"
    r = rng.random()
    if r < 0.1:
        path += "?model=" + rng.choice(["nope", "", "../x", "%00", "default"])
    if r < 0.3:                                           # raw body
        return path, data, rng.choice(CONTENT_TYPES) or "application/octet-stream"
    fields = {"model": rng.choice(["nope", "x" * 2000, "ü"])} if rng.random() < 0.05 else None
    body, ctype = multipart(data, rng.choice(FILENAMES), rng.choice(CONTENT_TYPES) or "audio/wav", fields)
    if rng.random() < 0.08:                               # broken multipart framing
        how = rng.random()
        if how < 0.33:
            body = body[: rng.randrange(len(body) + 1)]
        elif how < 0.66:
            ctype = "multipart/form-data"                 # no boundary
        else:
            ctype = "multipart/form-data; boundary=" + rng.choice(["", "x" * 200, "\"", "----"])
    return path, body, ctype


def run_fuzz(port: int, count: int, seconds: float, clients: int, seed: int) -> dict:
    seed_files = seeds()
    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    sent = 0

    def worker(k: int) -> None:
        nonlocal sent
        rng, client = random.Random(seed * 1000 + k), Client(port, timeout=120)
        while time.perf_counter() < deadline:
            with lock:
                if sent >= count:
                    break
                sent += 1
            path, body, ctype = fuzz_request(rng, seed_files)
            try:
                status, payload = client.post(path, body, ctype)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    statuses["connection error"] += 1
                    failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                statuses[status] += 1
                if status >= 500:
                    failures.append(f"{status}: {payload[:200]!r}")
        client.close()

    wall = run_clients(worker, clients)
    return {"uploads": sum(statuses.values()), "seconds": round(wall, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
            "5xx": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500),
            "connection_errors": statuses["connection error"], "first_failures": failures[:5]}


# -- main ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="bundle folder (default: the shipped model)")
    ap.add_argument("--corpora", default="../shared/corpora", help="real speech clips from here (RAVDESS) when present")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients for the load run")
    ap.add_argument("--seconds", type=float, default=30, help="length of the load run")
    ap.add_argument("--clip-seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=4, help="server request threads")
    ap.add_argument("--torch-threads", type=int, default=1, help="server torch threads per request")
    ap.add_argument("--fuzz", type=int, default=5000, help="most fuzz uploads (0: no fuzz run)")
    ap.add_argument("--fuzz-seconds", type=float, default=180, help="longest fuzz run")
    ap.add_argument("--fuzz-clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="serkit-load-")) / "server.log"
    proc = start_server(args, port, log)
    report: dict = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count()}
    try:
        report["rss_mb_start"] = round(rss_mb(proc.pid), 1)
        clips = real_speech(args.corpora, args.clip_seconds) or [encode(speechlike(args.clip_seconds, seed))
                                                                 for seed in range(16)]
        print(f"clips: {'16 RAVDESS clips from ' + args.corpora if len(clips) == 16 and Path(args.corpora).is_dir() else '16 synthetic speech-like clips'} "
              f"(cut or padded to {args.clip_seconds:g} s)", flush=True)
        run_load(port, clips, args.clients, min(3.0, args.seconds))              # warm-up
        report["rss_mb_after_warmup"] = round(rss_mb(proc.pid), 1)
        load = run_load(port, clips, args.clients, args.seconds)
        report["load"] = load
        report["rss_mb_after_load"] = round(rss_mb(proc.pid), 1)
        print(f"load: {load['clients']} clients x {load['seconds']} s, {args.clip_seconds:g} s clips: "
              f"{load['requests']} requests, {load['requests_per_s']} req/s, latency p50 {load['p50_ms']} ms, "
              f"p90 {load['p90_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms, "
              f"errors {load['errors']} {load['error_kinds'] or ''}")
        print(f"server RSS: {report['rss_mb_start']} MB at start, {report['rss_mb_after_warmup']} MB after "
              f"warm-up, {report['rss_mb_after_load']} MB after the load run "
              f"({100 * (report['rss_mb_after_load'] / report['rss_mb_after_warmup'] - 1):+.1f}% since warm-up)")
        ok = load["errors"] == 0
        if args.fuzz:
            fuzz = run_fuzz(port, args.fuzz, args.fuzz_seconds, args.fuzz_clients, args.seed)
            report["fuzz"] = fuzz
            alive = proc.poll() is None
            report["rss_mb_after_fuzz"] = round(rss_mb(proc.pid), 1) if alive else None
            print(f"fuzz: {fuzz['uploads']} uploads in {fuzz['seconds']} s, statuses {fuzz['statuses']}, "
                  f"5xx {fuzz['5xx']}, dropped connections {fuzz['connection_errors']}, server alive {alive}, "
                  f"RSS after {report['rss_mb_after_fuzz']} MB")
            for line in fuzz["first_failures"]:
                print("  ", line)
            ok = ok and alive and fuzz["5xx"] == 0 and fuzz["connection_errors"] == 0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    tracebacks = log.read_text(errors="replace").count("Traceback")
    report["server_tracebacks"] = tracebacks
    report["load_average_after"] = os.getloadavg()
    print(f"server log: {log} ({tracebacks} tracebacks); load average before {report['load_average_before'][0]:.1f}, "
          f"after {report['load_average_after'][0]:.1f} on {report['cpus']} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    ok = ok and tracebacks == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

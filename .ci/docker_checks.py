"""HTTP checks of a running serkit container, for .ci/docker-smoke (Python's standard library only).

Waits for /healthz, then: a real clip's answer (RAVDESS from ../shared/corpora when it is there,
compared with the checkout's own `serkit predict` when that answer is given), two clips joined by
a pause (the timeline), a synthetic WAV, and a text file (415). Prints one line per check; exits 1
at the first failure, with the reason.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from pathlib import Path



class CheckFailed(Exception):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, dict | None, bytes]:
    """(status, JSON body or None, raw body); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return status, parsed, body


def upload(base: str, name: str, content: bytes, query: str = "") -> tuple[int, dict | None, bytes]:
    """POST /api/predict as the page does: multipart, field ``file``."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return request(f"{base}api/predict{query}", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def wav_bytes(samples: list[int] | bytes, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples if isinstance(samples, bytes) else struct.pack(f"<{len(samples)}h", *samples))
    return buf.getvalue()


def chirp(seconds: float, rate: int = 16000) -> bytes:
    n = int(seconds * rate)
    return wav_bytes([int(9000 * math.sin(2 * math.pi * (150 + 200 * i / n) * i / rate)) for i in range(n)], rate)


def read_pcm16(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        check(w.getnchannels() == 1 and w.getsampwidth() == 2, f"{path}: expected 16-bit mono PCM")
        return w.readframes(w.getnframes()), w.getframerate()


def wait_healthy(base: str, started: float, limit: float) -> float:
    while True:
        try:
            status, body, _ = request(base + "healthz", timeout=2)
            if status == 200 and body and body.get("status") == "ok":
                return time.time() - started
        except OSError:
            pass
        check(time.time() - started < limit, f"/healthz did not answer 200 within {limit:.0f} s")
        time.sleep(0.1)


def check_answer(answer: dict | None, labels: list[str], what: str) -> dict:
    check(isinstance(answer, dict), f"{what}: the answer is not JSON")
    check(answer.get("emotion") in labels, f"{what}: emotion {answer.get('emotion')!r} is not one of {labels}")
    probs = answer.get("probabilities", {})
    check(list(probs) == labels, f"{what}: probabilities {list(probs)} do not follow the labels {labels}")
    check(abs(sum(probs.values()) - 1) < 0.01, f"{what}: probabilities sum to {sum(probs.values()):.4f}")
    return answer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT/")
    ap.add_argument("--started", type=float, required=True, help="time.time() just before docker run")
    ap.add_argument("--start-limit", type=float, default=180)
    ap.add_argument("--clip", type=Path, help="a real 16-bit mono WAV (RAVDESS)")
    ap.add_argument("--second-clip", type=Path, help="joined to --clip after a pause, for the timeline")
    ap.add_argument("--expected", type=Path, help="`serkit predict -f json --clip` from the checkout")
    args = ap.parse_args()
    base = args.url if args.url.endswith("/") else args.url + "/"
    try:
        print(f"start: /healthz 200 after {wait_healthy(base, args.started, args.start_limit):.1f} s")
        status, models, _ = request(base + "api/models")
        check(status == 200 and isinstance(models, dict), f"/api/models answered {status}")
        default = models.get("default") or models["models"][0]["name"]
        labels = next(m["labels"] for m in models["models"] if m["name"] == default)

        if args.clip:
            status, answer, raw = upload(base, args.clip.name, args.clip.read_bytes())
            check(status == 200, f"real clip {args.clip.name}: {status} {raw[:300]!r}")
            check_answer(answer, labels, args.clip.name)
            pcm, rate = read_pcm16(args.clip)
            seconds = len(pcm) / 2 / rate
            check(abs(answer["duration_s"] - seconds) < 0.01,
                  f"{args.clip.name}: duration_s {answer['duration_s']} but the file holds {seconds:.3f} s")
            line = (f"real clip {args.clip.name}: {answer['emotion']} {answer['confidence']:.3f} "
                    f"in {answer['elapsed_ms']:.0f} ms")
            if args.expected:
                want = json.loads(args.expected.read_text())[0]
                diff = max(abs(want["probabilities"][k] - answer["probabilities"][k]) for k in labels)
                check(want["emotion"] == answer["emotion"] and diff < 0.01,
                      f"{args.clip.name}: the image says {answer['emotion']}, the checkout's serkit predict says "
                      f"{want['emotion']} (largest probability difference {diff:.4f})")
                line += f"; the checkout's serkit predict agrees (largest difference {diff:.1e})"
            print(line)
            if args.second_clip:
                pcm2, rate2 = read_pcm16(args.second_clip)
                check(rate2 == rate, f"{args.second_clip}: {rate2} Hz, {args.clip} {rate} Hz")
                joined = wav_bytes(pcm + b"\0\0" * int(1.5 * rate) + pcm2, rate)
                status, answer, raw = upload(base, "joined.wav", joined)
                check(status == 200, f"two joined clips: {status} {raw[:300]!r}")
                check_answer(answer, labels, "two joined clips")
                check(len(answer["timeline"]) >= 1 and answer["vad"],
                      f"two joined clips: no timeline ({answer.get('vad')!r}, {answer.get('timeline')!r})")
                segments = ", ".join(f"{s['start']:.2f}-{s['end']:.2f} s {s['emotion']}" for s in answer["timeline"])
                print(f"timeline of two clips and a 1.5 s pause ({answer['vad']} VAD): {segments}")

        status, answer, raw = upload(base, "chirp.wav", chirp(2.0))
        check(status == 200 and isinstance(answer, dict), f"synthetic WAV: {status} {raw[:300]!r} (want 200)")
        if answer.get("emotion") is None:   # a chirp is not speech: no emotion, and the reason
            check(isinstance(answer.get("reason"), str) and answer["reason"].startswith("no speech")
                  and answer.get("probabilities") == {}, f"synthetic WAV: no emotion and no reason: {raw[:300]!r}")
            print(f"synthetic WAV: 200, no emotion ({answer['reason']})")
        else:
            check_answer(answer, labels, "a synthetic WAV")
            print(f"synthetic WAV: 200, {answer['emotion']} {answer['confidence']:.3f}")

        status, answer, raw = upload(base, "notes.wav", b"this is not audio\n" * 20)
        check(status == 415 and isinstance(answer, dict) and answer.get("error") == "not_audio",
              f"text upload: {status} {raw[:300]!r} (want 415 not_audio)")
        print(f"text file called notes.wav: {status} {answer['error']}")
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

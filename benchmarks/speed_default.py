"""Speed of a shipped model through the path users take (the Predictor: speech detection, the
scorer, onnxruntime), against baselines timed in the same run.

    python benchmarks/speed_default.py [--model default|fast|BUNDLE] [--clips 64] [--repeats 50]
                                       [--processes 7]

Prints, on 3 s clips (``--audio`` RAVDESS clips cut or padded to 3 s when ../shared/corpora is
there, else babble-like synthetic speech):

- latency, 1 thread: the model on one 3 s window (``Predictor.logits``) and the whole answer
  for one clip (``predict_waveform``: silero VAD + scorer), median and p90 over ``--repeats``,
  and the real-time factor (compute / audio);
- throughput, 2 threads: ``--clips`` clips per ``Predictor.analyse`` call, clips per second;
- start-up: ``serkit predict one.wav`` as a whole process against ``python -c "import torch"``
  on the same machine, the median of ``--processes`` runs each, alternating, and their ratio.
Compare figures only within one run: this machine's speed drifts by up to 30 %.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from serkit.audio import load_audio
from serkit.inference import load_model

SR = 16000


def clips(n: int) -> list[np.ndarray]:
    files = sorted(glob.glob("../shared/corpora/ravdess/Actor_*/*.wav"))[:n]
    if files:
        return [np.pad(w, (0, max(0, 3 * SR - len(w))))[:3 * SR] for w in (load_audio(f) for f in files)]
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    return [(0.2 * np.sin(2 * np.pi * (120 + 30 * np.sin(2 * np.pi * 3 * t)) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
             + 0.01 * rng.standard_normal(len(t))).astype(np.float32) for _ in range(n)]


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--processes", type=int, default=7)
    args = ap.parse_args(argv)

    waves = clips(args.clips)
    p = load_model(args.model)
    runtime = p.runtime
    print(f"{p!r}")
    # latency on one thread
    from serkit.runtimes import onnx_session
    if hasattr(runtime, "threads"):          # encoder + head: each window runs alone on one thread
        runtime.threads = 1
    elif hasattr(runtime, "path"):           # an exported graph: a one-thread session
        runtime.session = onnx_session(str(runtime.path), 1)
    single = waves[0]
    med, p90 = timed(lambda: p.logits([single]), args.repeats)
    print(f"latency, 1 thread, model on one 3 s window:  median {med * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, "
          f"RTF {med / 3:.4f}")
    med, p90 = timed(lambda: p.predict_waveform(single), args.repeats)
    print(f"latency, 1 thread, whole answer (VAD + scorer): median {med * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
    # throughput on two threads
    if hasattr(runtime, "threads"):
        runtime.threads = 2
    elif hasattr(runtime, "path"):
        runtime.session = onnx_session(str(runtime.path), 2)
    med, _ = timed(lambda: p.analyse(waves), max(3, args.repeats // 10))
    print(f"throughput, 2 threads: {len(waves) / med:.0f} clips/s ({len(waves)} clips of 3 s per call)")
    # whole-process start-up
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "one.wav"
        sf.write(wav, single, SR)
        cmds = {"serkit predict one.wav": [sys.executable, "-m", "serkit", "predict", "--model", args.model, str(wav)],
                'python -c "import torch"': [sys.executable, "-c", "import torch"]}
        runs: dict[str, list[float]] = {k: [] for k in cmds}
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        for _ in range(args.processes):
            for name, cmd in cmds.items():
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                runs[name].append(time.perf_counter() - t)
        a, b = (statistics.median(v) for v in runs.values())
        print(f"start-up: serkit predict one.wav {a:.2f} s, python -c 'import torch' {b:.2f} s "
              f"(median of {args.processes}); ratio {a / b:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

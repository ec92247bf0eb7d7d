"""Inference and training speed of the CNN-LSTM, and peak memory.

    python benchmarks/speed.py [--model BUNDLE] [--clips 1024] [--batch 64]

Prints: single-clip latency (3 s clip, 1 thread, median and p90), batch throughput (clips/s
with 2 threads), training time per epoch for 1,000 clips (forward + backward + AdamW step,
2 threads), and the process's peak resident memory. Uses the shipped default model unless
``--model`` names another bundle. Compare numbers only within one run on an idle machine.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

import serkit
from serkit.audio import SAMPLE_RATE


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    ap.add_argument("--clips", type=int, default=1024, help="clips for the throughput test")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=200, help="single-clip repeats")
    args = ap.parse_args(argv)

    predictor = serkit.load_model(args.model)
    n = predictor.clip_samples
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(n)).astype(np.float32)
    print(f"model {predictor.name} ({predictor.config['model_type']}), window {n / SAMPLE_RATE:.1f} s, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads available")

    torch.set_num_threads(1)
    one, one_len = clip[None], np.array([n])
    for _ in range(10):
        predictor.logits_windows(one, one_len)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predictor.logits_windows(one, one_len)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"latency, one 3 s clip, 1 thread: median {statistics.median(times):.2f} ms, "
          f"p90 {times[int(0.9 * len(times))]:.2f} ms")

    torch.set_num_threads(2)
    batch = (0.1 * rng.standard_normal((args.clips, n))).astype(np.float32)
    lengths = np.full(args.clips, n)
    predictor.logits_windows(batch[:args.batch], lengths[:args.batch], args.batch)
    t = time.perf_counter()
    predictor.logits_windows(batch, lengths, args.batch)
    dt = time.perf_counter() - t
    print(f"throughput, batches of {args.batch}, 2 threads: {args.clips / dt:.0f} clips/s "
          f"(real-time factor {dt / (args.clips * n / SAMPLE_RATE):.5f})")

    if predictor.config["model_type"] == "cnn_lstm":
        from serkit.bundle import build_model
        model = build_model("cnn_lstm", predictor.config["model_config"]).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        y = torch.from_numpy(rng.integers(0, len(predictor.labels), 1000))
        x = torch.from_numpy(batch[:1000] if args.clips >= 1000 else np.resize(batch, (1000, n)))
        t = time.perf_counter()
        for i in range(0, 1000, 32):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 32], torch.full((len(y[i:i + 32]),), n)), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"training, 1000 clips (batch 32, 2 threads): {time.perf_counter() - t:.1f} s per epoch")
    print(f"peak resident memory: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

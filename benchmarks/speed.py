"""Inference and training speed of the CNN-LSTM, and peak memory; pretrained backbones' speed.

    python benchmarks/speed.py [--model BUNDLE] [--clips 1024] [--batch 64]
    python benchmarks/speed.py --backbone ../shared/models/whisper-base [--backbone random:wav2vec2] ...

Prints: single-clip latency (3 s clip, 1 thread, median and p90); batch throughput (clips/s
with 2 threads, median and best of ``--rounds``; for a CNN-LSTM, interleaved round by round with
the first shipped model's design, max-pooling blocks and n_fft 512, and their ratio); training
time per epoch for 1,000 clips (forward + backward + AdamW step, 2 threads); and the process's
peak resident memory. Uses the shipped default model unless
``--model`` names another bundle (a pretrained bundle works too). Compare numbers only within
one run on an idle machine.

With ``--backbone`` (repeatable), each backbone is measured in a fresh process as a frozen
``PretrainedSER`` (mean pooling, weighted layers, 6 classes, 3 s window): load time, parameters,
single-clip latency (1 thread), real-time factor with 2 threads, and that process's peak
memory. ``random:wav2vec2``, ``random:hubert`` and ``random:wavlm`` build the base
architectures (transformers' default configs) with random weights, for speed only.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import serkit
from serkit.audio import SAMPLE_RATE


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_backbone(kind: str, folder: Path) -> Path:
    """A base-size architecture of ``kind`` with random weights (same compute as the real one)."""
    from transformers import (HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Model, WavLMConfig, WavLMModel)

    classes = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel),
               "wavlm": (WavLMConfig, WavLMModel)}
    if kind not in classes:
        raise SystemExit(f"unknown random:{kind}; choose one of: {', '.join(classes)}")
    config_cls, model_cls = classes[kind]
    model_cls(config_cls()).save_pretrained(folder / kind)
    Wav2Vec2FeatureExtractor().save_pretrained(folder / kind)
    return folder / kind


def first_design(predictor):
    """A Predictor for the first shipped CNN-LSTM's architecture (max-pooling blocks, n_fft 512)
    with random weights and the same labels and window, prepared as load_model prepares a bundle."""
    from serkit.bundle import build_model
    from serkit.inference import Predictor, for_inference

    config = {**predictor.config["model_config"], "downsample": "pool", "n_fft": 512}
    return Predictor(for_inference(build_model("cnn_lstm", config), "cnn_lstm"), predictor.config,
                     name="first design")


def measure_backbone(spec: str, clips: int, batch: int, repeats: int) -> None:
    """One backbone's load time, latency, real-time factor and peak memory (this process)."""
    import tempfile

    from serkit.models.pretrained import PretrainedConfig, PretrainedSER

    tmp = tempfile.TemporaryDirectory()
    path = str(random_backbone(spec.split(":", 1)[1], Path(tmp.name))) if spec.startswith("random:") else spec
    torch.set_num_threads(2)
    t = time.perf_counter()
    model = PretrainedSER(PretrainedConfig(n_classes=6, backbone=path, clip_seconds=3.0)).eval()
    load_s = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters()) / 1e6
    n = 3 * SAMPLE_RATE
    rng = np.random.default_rng(0)
    one = torch.from_numpy((0.1 * rng.standard_normal((1, n))).astype(np.float32))
    many = torch.from_numpy((0.1 * rng.standard_normal((clips, n))).astype(np.float32))
    with torch.inference_mode():
        torch.set_num_threads(1)
        model(one, torch.tensor([n]))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(one, torch.tensor([n]))
            times.append((time.perf_counter() - t) * 1000)
        torch.set_num_threads(2)
        model(many[:batch], torch.full((min(batch, clips),), n))
        t = time.perf_counter()
        for i in range(0, clips, batch):
            model(many[i:i + batch], torch.full((len(many[i:i + batch]),), n))
        dt = time.perf_counter() - t
    times.sort()
    name = spec if not spec.startswith("random:") else f"{spec} (base architecture, random weights)"
    print(f"backbone {name}: {params:.1f} M parameters, {model.n_hidden - 1} layers, loaded in {load_s:.1f} s", flush=True)
    print(f"  latency, one 3 s clip, 1 thread: median {statistics.median(times):.0f} ms, "
          f"p90 {times[int(0.9 * len(times))]:.0f} ms", flush=True)
    print(f"  throughput, {clips} clips of 3 s in batches of {batch}, 2 threads: {clips / dt:.1f} clips/s, "
          f"real-time factor {dt / (clips * 3.0):.4f}", flush=True)
    print(f"  peak resident memory: {peak_rss_mb():.0f} MB", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    ap.add_argument("--clips", type=int, default=1024, help="clips for the throughput test")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=200, help="single-clip repeats")
    ap.add_argument("--rounds", type=int, default=7, help="throughput rounds (median and best are printed)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the first CNN-LSTM design that throughput is compared with")
    ap.add_argument("--backbone", action="append", default=[], metavar="NAME_OR_PATH",
                    help="measure this pretrained backbone instead of a bundle (repeatable; random:wav2vec2, "
                         "random:hubert, random:wavlm for base architectures with random weights)")
    ap.add_argument("--one-backbone", help=argparse.SUPPRESS)   # the child process of --backbone
    args = ap.parse_args(argv)

    if args.one_backbone:
        measure_backbone(args.one_backbone, args.clips, args.batch, args.repeats)
        return 0
    if args.backbone:
        import subprocess
        import sys

        print(f"torch {torch.__version__}; each backbone in its own process", flush=True)
        for spec in args.backbone:
            subprocess.run([sys.executable, __file__, "--one-backbone", spec, "--clips", str(args.clips),
                            "--batch", str(args.batch), "--repeats", str(args.repeats)], check=True)
        return 0

    predictor = serkit.load_model(args.model)
    n = predictor.clip_samples
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(n)).astype(np.float32)
    print(f"model {predictor.name} ({predictor.config['model_type']}), window {n / SAMPLE_RATE:.1f} s, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads available")

    # Throughput before latency: after torch.set_num_threads(1), two-thread runs in the same
    # process measured 10-30 % slower here.
    torch.set_num_threads(2)
    batch = (0.1 * rng.standard_normal((args.clips, n))).astype(np.float32)
    lengths = np.full(args.clips, n)
    engines = {"this model": predictor}
    if predictor.config["model_type"] == "cnn_lstm" and not args.no_baseline:
        engines["first design"] = first_design(predictor)
    rates = {name: [] for name in engines}
    for p in engines.values():                                   # warm-up
        p.logits_windows(batch[:args.batch], lengths[:args.batch], args.batch)
    for _ in range(args.rounds):                                 # interleaved, so load hits both alike
        for name, p in engines.items():
            t = time.perf_counter()
            p.logits_windows(batch, lengths, args.batch)
            rates[name].append(args.clips / (time.perf_counter() - t))
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"throughput, {name}, batches of {args.batch}, 2 threads: median {med:.0f} clips/s, "
              f"best {max(r):.0f} ({args.rounds} rounds of {args.clips} clips; real-time factor "
              f"{1 / (med * n / SAMPLE_RATE):.5f})")
    if len(rates) == 2:
        ratios = [a / b for a, b in zip(*rates.values())]
        print(f"  first design = the same CNN-LSTM with 2x2 max-pooling blocks and n_fft 512 (the first "
              f"shipped model's architecture, random weights); this model is {statistics.median(ratios):.2f}x "
              f"as fast (median of per-round ratios)")

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

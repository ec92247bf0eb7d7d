"""Eager PyTorch vs ONNX fp32 vs ONNX int8 for one bundle, in one run.

    python benchmarks/speed_onnx.py [--model BUNDLE] [--clips 512] [--batch 64] [--repeats 200]
                                    [--exporter torchscript|dynamo]
    python benchmarks/speed_onnx.py --backbone ../shared/models/whisper-base --exporter dynamo \
                                    --clips 64 --batch 16 --repeats 20

Exports the bundle (``serkit export --onnx --int8``) to a temporary folder, then measures each
engine on the same random 3 s clips (the model's window):

- latency: one clip per call, 1 thread (torch.set_num_threads(1) / onnxruntime
  intra_op_num_threads=1), median and p90 over ``--repeats`` calls, and its real-time factor
  (compute time / audio time);
- throughput: ``--clips`` clips in batches of ``--batch``, 2 threads;
- size: the eager model's parameters and buffers in memory (fp32), the ONNX files on disk.

Without ``--model`` it times one CNN-LSTM of the shipped fast model's architecture, freshly
initialised (same cost, random weights): both shipped models run on onnxruntime already.
Compare numbers only within one run, on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from serkit.audio import SAMPLE_RATE
from serkit.export import export_onnx
from serkit.inference import load_model
from serkit.onnx_runtime import load_onnx_model


def backbone_bundle(spec: str, tmp: Path) -> Path:
    """A frozen-encoder bundle of ``spec`` (a folder, or random:wav2vec2|hubert|wavlm as in
    speed.py) with an untrained 6-class head on 3 s windows: the compute of a trained one."""
    from serkit.bundle import save_bundle
    from serkit.emotions import DEFAULT_EMOTIONS
    from serkit.models.pretrained import PretrainedConfig, PretrainedSER
    from speed import random_backbone

    path = str(random_backbone(spec.split(":", 1)[1], tmp)) if spec.startswith("random:") else spec
    # The bundle names this folder; loading it (export, the eager baseline) must find it allowed.
    os.environ["SERKIT_BACKBONE_DIRS"] = os.pathsep.join(
        p for p in (os.environ.get("SERKIT_BACKBONE_DIRS"), str(Path(path).resolve().parent)) if p)
    torch.manual_seed(0)
    model_ = PretrainedSER(PretrainedConfig(n_classes=len(DEFAULT_EMOTIONS), backbone=path, clip_seconds=3.0))
    return save_bundle(tmp / "backbone-bundle", model_.eval(), list(DEFAULT_EMOTIONS),
                       {"sample_rate": SAMPLE_RATE, "clip_seconds": 3.0})


def pick_bundle(model: str | None, tmp: Path, backbone: str | None = None) -> tuple[Path, str]:
    if backbone:
        return backbone_bundle(backbone, tmp), f"a frozen {backbone} bundle (untrained head)"
    if model:
        return Path(model), f"bundle {model}"
    # The shipped models are ONNX already (the default an encoder head, the fast model an int8
    # export): time a CNN-LSTM of the fast model's members' architecture, freshly initialised
    # (compute does not depend on the weights).
    from serkit.bundle import save_bundle
    from serkit.emotions import DEFAULT_EMOTIONS
    from serkit.inference import shipped_model_path
    from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig

    torch.manual_seed(0)
    fast = shipped_model_path("fast") / "config.json"
    member = json.loads(fast.read_text())["model_config"]["members"][0]["model_config"] if fast.is_file() else {}
    model_ = CNNLSTM(CNNLSTMConfig(**{**member, "n_classes": len(DEFAULT_EMOTIONS)})).eval()
    path = save_bundle(tmp / "fresh", model_, list(DEFAULT_EMOTIONS), {"sample_rate": SAMPLE_RATE, "clip_seconds": 3.0})
    return path, "one CNN-LSTM of the shipped fast model's architecture, freshly initialised"


def measure(predictor, clip: np.ndarray, batch: np.ndarray, batch_size: int, repeats: int) -> dict[str, float]:
    n = clip.shape[-1]
    one, one_len = clip[None], np.array([n], np.int64)
    for _ in range(10):
        predictor.logits_windows(one, one_len)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.logits_windows(one, one_len)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    lengths = np.full(len(batch), n, np.int64)
    predictor.logits_windows(batch[:batch_size], lengths[:batch_size], batch_size)
    t = time.perf_counter()
    predictor.logits_windows(batch, lengths, batch_size)
    dt = time.perf_counter() - t
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))],
            "clips_per_s": len(batch) / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped model, else a fresh CNN-LSTM)")
    ap.add_argument("--backbone", default=None, metavar="FOLDER|random:KIND",
                    help="measure a frozen pretrained-encoder bundle built from this backbone instead "
                         "(e.g. ../shared/models/whisper-base; needs --exporter dynamo)")
    ap.add_argument("--clips", type=int, default=512, help="clips for the throughput test")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=200, help="single-clip repeats")
    ap.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                    help="torch.onnx exporter (both give the same graph; torchscript is faster to run)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        bundle, what = pick_bundle(args.model, Path(tmp), args.backbone)
        t = time.perf_counter()
        export = export_onnx(bundle, Path(tmp) / "onnx", int8=True, exporter=args.exporter)
        export_s = time.perf_counter() - t
        import onnxruntime as ort
        print(f"model: {what}")
        print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.exporter} export in {export_s:.1f} s; "
              f"parity fp32 {export.parity['fp32']['max_abs_prob_diff']:.1e}, "
              f"int8 {export.parity['int8']['max_abs_prob_diff']:.1e} (max |p - p_torch|)")
        eager = load_model(bundle, runtime="torch")
        n = eager.clip_samples
        rng = np.random.default_rng(0)
        clip = (0.1 * rng.standard_normal(n)).astype(np.float32)
        batch = (0.1 * rng.standard_normal((args.clips, n))).astype(np.float32)
        # size: the eager model's parameters and buffers in memory (a pretrained bundle's file may
        # hold only its head), the ONNX files on disk
        eager_mb = sum(t.numel() * t.element_size() for t in [*eager.model.parameters(), *eager.model.buffers()]) / 1e6
        engines = [("eager PyTorch", lambda threads: (torch.set_num_threads(threads), eager)[1], eager_mb)]
        for precision, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
            path = export.folder / name
            engines.append((f"ONNX {precision}", lambda threads, p=path: load_onnx_model(p, threads=threads),
                            path.stat().st_size / 1e6))

        seconds = n / SAMPLE_RATE
        print(f"{'engine':<14} {'latency 1 thread (median / p90)':>32} {'RTF':>8} "
              f"{'throughput 2 threads':>22} {'size':>9}")
        for label, make, size in engines:
            multi = measure(make(2), clip, batch, args.batch, 3)   # 2 threads first: see speed.py
            single = measure(make(1), clip, batch[:args.batch], args.batch, args.repeats)
            print(f"{label:<14} {single['median_ms']:>20.2f} / {single['p90_ms']:.2f} ms "
                  f"{single['median_ms'] / 1000 / seconds:>8.4f} {multi['clips_per_s']:>16.1f} clips/s "
                  f"{size:>7.2f} MB", flush=True)
        print(f"(clips of {seconds:.1f} s; throughput over {args.clips} clips in batches of {args.batch}; "
              "RTF = median single-clip compute time / audio duration; size: eager in memory, ONNX on disk)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

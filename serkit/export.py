"""Export a bundle to ONNX, the front-end included: the ONNX model takes waveforms.

    serkit export BUNDLE --onnx [--int8 | --int8-only] -o DIR

writes ``DIR/model.onnx`` (fp32), with ``--int8`` also ``DIR/model.int8.onnx`` (dynamic int8
quantisation of the matrix products and the LSTM; ``--int8-only``: that file alone, the fp32
graph checked and then left out, as the shipped fast model is), and ``DIR/config.json``: the bundle's config
plus an ``"onnx"`` section (files, exporter, opset, versions and the measured parity). Load the
folder with :func:`serkit.load_model` (it sees the ONNX files) or ``serkit predict --model DIR``.

The graph::

    inputs   wave     float32 (batch, samples)   16 kHz mono, zero-padded after ``lengths``
             lengths  int64   (batch,)           valid samples of each row
    output   logits   float32 (batch, classes)   uncalibrated; divide by config["temperature"]

Both the batch and the samples axis are dynamic for the CNN-LSTM (any length the model accepts
in PyTorch). The front-ends compute their power spectrum as a strided convolution by the
windowed DFT basis while they are exported (:func:`serkit.features.conv_stft_power`: the same
numbers, real-valued, and 2-10x faster in onnxruntime than its STFT operator). Two exporters:

- ``dynamo`` (default; torch >= 2.9's own exporter, needs ``onnxscript``): torch.export of the
  model as it is. On a 2-core machine it takes about 10-30 s for the CNN-LSTM, nearly all of it
  in torch.export's tracing of the LSTM.
- ``torchscript`` (the legacy exporter, ``dynamo=False``): about 1 s for the CNN-LSTM.

Both give the same graph (Conv, LSTM, … as single ONNX ops) and match PyTorch to ~1e-6.
Every export checks itself: the ONNX model is run on a batch of a different size and length
than the one it was traced with, and the export fails if its probabilities differ from
PyTorch's by more than ``tolerance``.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serkit.bundle import CONFIG, load_bundle, read_config
from serkit.models.quantize import INT8_OPS, quantize_int8  # noqa: F401  (re-exported)
from serkit.safety import atomic_folder, check_output_folder, to_json
from serkit.scorer import softmax

ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
EXPORTERS = ("dynamo", "torchscript")
#: The files of an export folder: what serkit replaces there (anything else in it stays).
EXPORT_FILES = (ONNX_FP32, ONNX_INT8, CONFIG)
#: Default parity bound for fp32 exports: largest absolute difference of any class probability.
FP32_TOLERANCE = 1e-4


class ExportError(ValueError):
    """An export that failed or whose result does not match the PyTorch model."""


@dataclass
class ExportResult:
    folder: Path
    files: dict[str, str]                 # precision -> file name
    parity: dict[str, dict[str, float]]   # precision -> {"max_abs_prob_diff", "top1_agreement"}
    info: dict[str, Any] = field(default_factory=dict)


class WaveformModel(nn.Module):
    """What is exported: ``(wave, lengths) -> logits``, the model in eval mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(wave, lengths)


def _example_inputs(clip_samples: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(batch, clip_samples, generator=g)
    lengths = torch.tensor([clip_samples] + [int(clip_samples * 0.6)] * (batch - 1), dtype=torch.int64)
    wave[1:, int(clip_samples * 0.6):] = 0.0
    return wave, lengths


def _export_graph(model: nn.Module, path: Path, clip_samples: int, exporter: str, opset: int | None) -> int:
    """Write the fp32 ONNX graph of ``model`` to ``path``; returns the opset used."""
    wrapped = WaveformModel(model).eval()   # the exporters restore the wrapper's mode afterwards
    args = _example_inputs(clip_samples)
    names = dict(input_names=["wave", "lengths"], output_names=["logits"])
    if exporter == "dynamo":
        opset = opset or 18
        batch = torch.export.Dim("batch", min=1)
        samples = torch.export.Dim("samples", min=1024)
        # Library chatter that asks nothing of the user: "torchvision is not installed",
        # "Attribute type is ambiguous ...", "Skipping constant folding for op Split ...".
        quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnx_ir", "onnxscript")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(wrapped, args, dynamo=True, opset_version=opset, verbose=False,
                                            dynamic_shapes=({0: batch, 1: samples}, {0: batch}), **names)
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
        if program is None:
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(path), external_data=False)
    elif exporter == "torchscript":
        opset = opset or 17     # STFT needs opset 17
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, args, str(path), dynamo=False, opset_version=opset,
                              dynamic_axes={"wave": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                            "logits": {0: "batch"}}, **names)
    else:
        raise ValueError(f"unknown exporter {exporter!r}; choose {' or '.join(EXPORTERS)}")
    model.eval()
    return opset


def _session(path: Path):
    import onnxruntime as ort
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def parity_inputs(clip_samples: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Three windows (a batch size other than the traced one) with different valid lengths:
    what the Predictor feeds the model."""
    rng = np.random.default_rng(seed)
    n = clip_samples
    t = np.arange(n) / 16000
    wave = np.stack([0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 1000.0, 3000.0)])
    wave = (wave + 0.02 * rng.standard_normal(wave.shape)).astype(np.float32)
    lengths = np.array([n, 2 * n // 3, n // 3], np.int64)
    for row, length in zip(wave, lengths):
        row[length:] = 0.0
    return wave, lengths


def compare(model: nn.Module, onnx_path: Path, wave: np.ndarray, lengths: np.ndarray,
            temperature: float = 1.0) -> dict[str, float]:
    """Largest absolute difference of calibrated probabilities, and top-1 agreement, between
    ``model`` in PyTorch and the ONNX file on the same input."""
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(wave), torch.from_numpy(lengths)).float().numpy()
    out = _session(onnx_path).run(["logits"], {"wave": wave, "lengths": lengths})[0]
    p, q = softmax(ref / temperature), softmax(out / temperature)
    return {"max_abs_prob_diff": float(np.abs(p - q).max()),
            "top1_agreement": float((p.argmax(1) == q.argmax(1)).mean())}


def export_onnx(bundle: str | os.PathLike, out: str | os.PathLike, int8: bool = False,
                exporter: str = "dynamo", opset: int | None = None,
                tolerance: float = FP32_TOLERANCE, force: bool = False, int8_only: bool = False) -> ExportResult:
    """Export the bundle at ``bundle`` to the folder ``out`` (created, or an earlier export
    replaced atomically; a folder holding other files needs ``force``, and keeps them).

    ``int8_only`` writes the int8 model alone (the fp32 graph is still exported and checked
    first, then left out: a shipped model's history grows by the int8 file only).

    Raises :class:`ExportError` when the fp32 model's probabilities differ from PyTorch's by more
    than ``tolerance`` on the parity input (see :func:`parity_inputs`), and
    :class:`~serkit.safety.OutputError` (before any work) for an ``out`` serkit may not write.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the onnx extra: pip install 'serkit[onnx]' ({exc})") from None
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose {' or '.join(EXPORTERS)}")
    bundle, out = Path(bundle), Path(out)
    if read_config(bundle)["model_type"] == "encoder_head":      # before any work
        raise ExportError(f"{bundle}: an encoder-head model runs on onnxruntime already (its encoder is an "
                          "int8 ONNX graph, its head a linear layer read with numpy): predict with or serve it "
                          "as it is; serkit export is for CNN-LSTM, ensemble and pretrained bundles")
    check_output_folder(out, "export", force=force, inputs=[bundle])
    model, config = load_bundle(bundle)
    model = model.float().eval()
    sample_rate = int(config["audio"]["sample_rate"])
    clip_samples = int(round(config["audio"]["clip_seconds"] * sample_rate))
    temperature = float(config.get("temperature", 1.0))

    with atomic_folder(out, "export", EXPORT_FILES, force=force, inputs=[bundle]) as tmp:
        try:
            used_opset = _export_graph(model, tmp / ONNX_FP32, clip_samples, exporter, opset)
        except ExportError:
            raise
        except Exception as exc:  # the exporters raise many kinds; name the model and exporter
            other = "dynamo" if exporter == "torchscript" else "torchscript"
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()     # one plain line
            raise ExportError(f"{bundle}: the {exporter} exporter failed for model type {config['model_type']!r} "
                              f"(the {other} exporter may manage: --exporter {other}): {type(exc).__name__}: "
                              f"{first[0] if first else ''}") from exc
        wave, lengths = parity_inputs(clip_samples)
        files = {"fp32": ONNX_FP32}
        parity = {"fp32": compare(model, tmp / ONNX_FP32, wave, lengths, temperature)}
        if parity["fp32"]["max_abs_prob_diff"] > tolerance:
            raise ExportError(f"{bundle}: the ONNX model's probabilities differ from PyTorch's by "
                              f"{parity['fp32']['max_abs_prob_diff']:.2e} (> {tolerance:.0e})")
        if int8 or int8_only:
            quantize_int8(tmp / ONNX_FP32, tmp / ONNX_INT8)
            files["int8"] = ONNX_INT8
            parity["int8"] = compare(model, tmp / ONNX_INT8, wave, lengths, temperature)
        if int8_only:   # the fp32 graph was checked (its parity stays on record) and is not kept
            (tmp / ONNX_FP32).unlink()
            del files["fp32"]
        import onnxruntime as ort
        info = {
            "files": files, "default": "int8" if "int8" in files else "fp32", "exporter": exporter,
            "opset": used_opset,
            "inputs": {"wave": "float32 (batch, samples)", "lengths": "int64 (batch,)"},
            "outputs": {"logits": "float32 (batch, classes), uncalibrated"},
            "int8_ops": list(INT8_OPS) if "int8" in files else [],
            "torch_version": torch.__version__, "onnxruntime_version": ort.__version__,
            "parity": parity, "source_bundle": str(bundle),
        }
        (tmp / CONFIG).write_text(to_json({**config, "onnx": info}, indent=2, default=str) + "\n",
                                  encoding="utf-8")
    return ExportResult(out, files, parity, info)

"""A Predictor backed by onnxruntime, for folders written by ``serkit export --onnx``.

It is a :class:`~serkit.inference.Predictor`: the same windows, calibration, ``predict_proba``,
``predict_files``, timelines and batch jobs; only the model call runs the ONNX graph.

    from serkit.onnx_runtime import load_onnx_model
    predictor = load_onnx_model("exported/")            # the export's default precision
    predictor = load_onnx_model("exported/model.onnx")  # or name the file
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serkit.bundle import BundleError, read_config
from serkit.inference import Predictor

ONNX_FP32 = "model.onnx"   # spelled as in serkit.export, which needs torch.onnx to import


class OnnxModule(nn.Module):
    """The ONNX session behind a torch-module face: ``(wave, lengths) -> logits`` tensors."""

    def __init__(self, session: Any):
        super().__init__()
        self.session = session

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.int64)
        out = self.session.run(["logits"], {"wave": wave.float().numpy(), "lengths": lengths.long().numpy()})
        return torch.from_numpy(out[0])


class OnnxPredictor(Predictor):
    """Predictor whose model is an ONNX graph run by onnxruntime (CPU)."""

    runtime = "onnx"

    def __init__(self, model_path: str | os.PathLike, config: dict[str, Any], name: str = "model",
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BundleError("--runtime onnx needs onnxruntime: pip install 'serkit[onnx]'") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.model_path = Path(model_path)
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{model_path}: onnxruntime cannot load it ({exc})") from None
        super().__init__(OnnxModule(self.session), config, name)

    def logits_windows(self, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits (n, classes) for windows (n, clip_samples) with valid ``lengths``."""
        out = []
        for i in range(0, len(windows), batch_size):
            feeds = {"wave": np.ascontiguousarray(windows[i:i + batch_size], dtype=np.float32),
                     "lengths": np.ascontiguousarray(lengths[i:i + batch_size], dtype=np.int64)}
            out.append(self.session.run(["logits"], feeds)[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)


def load_onnx_model(path: str | os.PathLike, precision: str | None = None,
                    threads: int | None = None) -> OnnxPredictor:
    """An :class:`OnnxPredictor` for an export folder or one of its ``.onnx`` files.

    ``precision`` (``"fp32"`` or ``"int8"``) picks a file of the folder; by default the one the
    export made its default (int8 when exported with ``--int8``).
    """
    p = Path(path)
    folder = p.parent if p.suffix == ".onnx" else p
    config = read_config(folder)
    if p.suffix == ".onnx":
        if not p.is_file():
            raise BundleError(f"{p}: no such ONNX file")
        model_file = p
    else:
        info = config.get("onnx")
        if not info:
            raise BundleError(f"{folder}: not an ONNX export (config.json has no 'onnx' section); "
                              "make one with: serkit export BUNDLE --onnx -o DIR")
        choice = precision or info.get("default", "fp32")
        if choice not in info.get("files", {}):
            raise BundleError(f"{folder}: no {choice} model in this export "
                              f"(it has {', '.join(info.get('files', {})) or 'none'})")
        model_file = folder / info["files"][choice]
    return OnnxPredictor(model_file, config, name=folder.name, threads=threads)

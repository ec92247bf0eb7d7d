"""Folders written by ``serkit export --onnx``, run by onnxruntime (no torch).

    from serkit.onnx_runtime import load_onnx_model
    predictor = load_onnx_model("exported/")            # the export's default precision
    predictor = load_onnx_model("exported/model.onnx")  # or name the file

The result is a :class:`~serkit.inference.Predictor` like any other: the same scorer, windows,
calibration, speech detection, timelines and batch jobs; only the model call runs the graph.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serkit.bundle import BundleError, read_config
from serkit.inference import Predictor, model_name
from serkit.runtimes import OnnxRuntime

ONNX_FP32 = "model.onnx"   # spelled as in serkit.export, which needs torch.onnx to import


class OnnxPredictor(Predictor):
    """Predictor whose model is an ONNX graph run by onnxruntime (CPU)."""

    def __init__(self, model_path: str | os.PathLike, config: dict[str, Any], name: str = "model",
                 threads: int | None = None):
        self.model_path = Path(model_path)
        try:
            runtime = OnnxRuntime(self.model_path, threads)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        super().__init__(runtime, config, name)


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
        files = info.get("files", {})
        if choice not in files or Path(files[choice]).name != files[choice]:
            raise BundleError(f"{folder}: no {choice} model in this export "
                              f"(it has {', '.join(files) or 'none'})")
        model_file = folder / files[choice]
    return OnnxPredictor(model_file, config, name=model_name(folder), threads=threads)

"""Folders written by ``serkit export --onnx``, run by onnxruntime (no torch).

    from serkit.onnx_runtime import load_onnx_model
    predictor = load_onnx_model("exported/")            # the export's default precision
    predictor = load_onnx_model("exported/model.onnx")  # or name the file

The result is a :class:`~serkit.inference.Predictor` like any other: the same scorer, windows,
calibration, speech detection, timelines and batch jobs; only the model call runs the graph.
(Both live in :mod:`serkit.inference`, which :func:`serkit.load_model` uses; this module names them.)
"""
from __future__ import annotations

from serkit.inference import OnnxPredictor, load_onnx_model

ONNX_FP32 = "model.onnx"   # spelled as in serkit.export, which needs torch.onnx to import

__all__ = ["ONNX_FP32", "OnnxPredictor", "load_onnx_model"]

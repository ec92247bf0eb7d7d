"""Dynamic int8 quantisation of ONNX graphs (exports and the shipped encoders)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Operators quantised by ``--int8``. Conv is left in fp32 on purpose: onnxruntime's ConvInteger
#: made the CNN-LSTM twice as slow on CPU (29 vs 62 clips/s), while int8 MatMul/LSTM keep speed.
INT8_OPS = ("MatMul", "Gemm", "LSTM", "Attention")


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, ops: tuple[str, ...] = INT8_OPS) -> None:
    """Dynamic int8 quantisation (int8 weights, activations quantised on the fly) of ``src``.

    The graph is first constant-folded by onnxruntime's pre-processing, so that weights built
    inside the graph (the LSTM's) become constants the quantiser can see.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=list(ops))

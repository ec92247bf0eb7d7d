"""Convert Resemblyzer's voice encoder to the ONNX graph serkit ships (serkit/assets/voices/).

    pip download --no-deps resemblyzer==0.1.4 -d /tmp/rz && unzip -o /tmp/rz/*.whl -d /tmp/rz
    python tools/voice_encoder.py /tmp/rz/resemblyzer/pretrained.pt serkit/assets/voices/voice_encoder.onnx --force

Resemblyzer (Resemble AI, Apache 2.0) is a GE2E speaker encoder (Wan et al., 2018): a 3-layer LSTM
(256 units) over 40-band mel power spectra of 1.6 s partials, a linear layer with ReLU, unit length.
Its ``pretrained.pt`` is a PyTorch checkpoint; it is read with ``torch.load(weights_only=True)``
(tensors only, never arbitrary pickled objects), its optimiser state dropped, and the network
written as an fp32 ONNX graph: input ``mels`` (batch, 160, 40), output ``embeddings`` (batch, 256).
The graph is checked against PyTorch on random input before it is written, and written whole
(a rename) or not at all; an existing file is replaced only with ``--force``. Needs serkit[train].
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class VoiceEncoder(nn.Module):
    """Resemblyzer's network: mel partials (batch, frames, 40) -> unit embeddings (batch, 256)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        e = torch.relu(self.linear(hidden[-1]))
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="resemblyzer's pretrained.pt")
    ap.add_argument("out", help="the ONNX file to write")
    ap.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from serkit.safety import OutputError, atomic_write_bytes, check_output_file

    try:
        check_output_file(args.out, inputs=[args.checkpoint], force=args.force, flag="OUT")   # before any work
    except OutputError as exc:
        sys.exit(f"error: {exc}")

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["model_state"]
    model = VoiceEncoder().eval()
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity")})
    graph = io.BytesIO()
    torch.onnx.export(model, (torch.rand(3, 160, 40),), graph, input_names=["mels"], output_names=["embeddings"],
                      dynamic_axes={"mels": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    check = torch.rand(5, 160, 40) * 3
    session = ort.InferenceSession(graph.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"mels": check.numpy()})[0]
    with torch.no_grad():
        want = model(check).numpy()
    err = float(np.abs(got - want).max())
    if err >= 1e-4:
        print(f"not written: the graph differs from PyTorch by {err:.2e}", file=sys.stderr)
        return 1
    atomic_write_bytes(args.out, graph.getvalue())
    print(f"{args.out}: {Path(args.out).stat().st_size / 1e6:.1f} MB, max difference from PyTorch {err:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

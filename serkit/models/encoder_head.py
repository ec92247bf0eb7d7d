"""A frozen speech encoder's layer statistics and a small head: the shipped default model's family.

    waveform (batch, samples) 16 kHz
      -> frozen encoder, as an ONNX graph (serkit.backbones): every kept hidden layer,
         layer-normalised per frame, pooled over the valid frames into mean and std
         -> mean, std (batch, layers, dim)
      -> EncoderHead: pick ``layers``; features = mean (or mean and std) per layer
         -> standardise with the training set's statistics (buffers) -> softmax-weighted sum
         over layers (or their concatenation) -> MLP -> logits (batch, classes)

The encoder never trains, so each clip's statistics are computed once (by the same ONNX graph
that serves, so training sees what users get) and cached; only the head trains, with
Lightning. At inference the head runs in NumPy (:class:`serkit.runtimes.NumpyHead`), so the
model needs onnxruntime and no torch.

:func:`export_stats_encoder` makes such a graph from a Hugging Face encoder (Whisper,
wav2vec2, HuBERT, WavLM…) through :class:`~serkit.models.pretrained.PretrainedSER`, truncated
to its first ``max_layers`` transformer layers, optionally int8-quantised.
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serkit.models.configs import COMBINES, HEAD_POOLINGS, SPEAKER_KEYS, EncoderHeadConfig  # noqa: F401  (re-exported)
from serkit.safety import atomic_folder, mark_folder


class EncoderHead(nn.Module):
    """Per-layer features (batch, len(layers), features) -> logits (batch, classes)."""

    def __init__(self, config: EncoderHeadConfig):
        super().__init__()
        self.config = c = config
        n = len(c.layers)
        self.register_buffer("feat_mean", torch.zeros(n, c.features))
        self.register_buffer("feat_std", torch.ones(n, c.features))
        self.layer_logits = nn.Parameter(torch.zeros(n)) if c.combine == "weighted" else None
        in_dim = c.features * (1 if c.combine == "weighted" else n)
        if c.head_hidden > 0:
            self.mlp = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(in_dim, c.head_hidden), nn.ReLU(),
                                     nn.Dropout(c.dropout), nn.Linear(c.head_hidden, c.n_classes))
        else:
            self.mlp = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(in_dim, c.n_classes))

    def select(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """The head's input from layer statistics (batch, all layers, dim): (batch, layers, features)."""
        x = mean[:, self.config.layers]
        return np.concatenate([x, std[:, self.config.layers]], axis=-1) if self.config.pooling == "stats" else x

    def set_speaker_head(self, weight, bias, table) -> None:
        """Store the speaker-centred head of same-speaker adaptation (:mod:`serkit.speaker`) with
        the model's weights (buffers ``speaker_weight``, ``speaker_bias``, ``speaker_table``)."""
        for key, value in zip(SPEAKER_KEYS, (weight, bias, table)):
            self.register_buffer(key, torch.as_tensor(np.asarray(value, np.float32)))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # weights may carry a speaker head (serkit.speaker) or not (bundles before it, the head
        # before its refit): the model takes the state's shape
        if all(k in state_dict for k in SPEAKER_KEYS):
            self.set_speaker_head(*(state_dict[k] for k in SPEAKER_KEYS))
        elif not any(k in state_dict for k in SPEAKER_KEYS):
            for key in SPEAKER_KEYS:
                if key in self._buffers:
                    delattr(self, key)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def fit_normalisation(self, x: np.ndarray) -> None:
        """Standardise inputs with the statistics of the training clips ``x`` (clips, layers, features)."""
        self.feat_mean.copy_(torch.from_numpy(x.mean(0)))
        self.feat_std.copy_(torch.from_numpy(x.std(0) + 1e-5))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = (x - self.feat_mean) / self.feat_std                          # (batch, layers, features)
        if self.layer_logits is None:
            x = x.flatten(1)                                              # (batch, layers * features)
        else:
            x = torch.einsum("l,blf->bf", self.layer_logits.softmax(0), x)   # (batch, features)
        return self.mlp(x)                                                # (batch, classes)


# ----------------------------------------------------------------------------- the encoder graph

class StatsEncoder(nn.Module):
    """(wave (batch, window), lengths (batch,)) -> mean, std (batch, layers, dim) of a frozen encoder."""

    def __init__(self, backbone: str, max_layers: int, clip_seconds: float = 3.0):
        super().__init__()
        from serkit.models.pretrained import PretrainedConfig, PretrainedSER

        self.ser = PretrainedSER(PretrainedConfig(backbone=backbone, max_layers=max_layers, freeze="head",
                                                  clip_seconds=clip_seconds, n_classes=2)).eval()
        self.window = getattr(self.ser, "window_samples", int(round(clip_seconds * 16000)))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ser.layer_stats(wave, lengths.clamp(1, wave.shape[1]))


def export_stats_encoder(backbone: str, out: Path, max_layers: int, clip_seconds: float = 3.0,
                         int8: bool = True, source: str | None = None, force: bool = False) -> dict[str, Any]:
    """Write ``out/encoder.onnx`` (int8 unless ``int8=False``) and ``out/backbone.json`` for the
    encoder at ``backbone`` (a local folder or hub name) truncated to ``max_layers`` layers;
    checks the graph against PyTorch and returns what backbone.json says. ``out`` is written as
    serkit writes every folder (:func:`serkit.safety.atomic_folder`: new, empty or serkit's own
    encoder folder, else ``force``; whole or not at all)."""
    from serkit.backbones import ENCODER_FILE, INFO_FILE

    model = StatsEncoder(backbone, max_layers, clip_seconds).eval()
    with atomic_folder(out, "encoder", (ENCODER_FILE, INFO_FILE), force=force) as tmp:
        info = _write_encoder(model, tmp, int8, source or str(backbone))
        mark_folder(tmp, "encoder")
    return info


def _write_encoder(model: StatsEncoder, out: Path, int8: bool, source: str) -> dict[str, Any]:
    """Export, quantise and check ``model`` into the (temporary) folder ``out``."""
    import onnxruntime as ort

    from serkit.backbones import ENCODER_FILE, INFO_FILE
    from serkit.models.quantize import quantize_int8

    window = model.window
    fp32 = out / "encoder.fp32.onnx"
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2, window, generator=g)
    lengths = torch.tensor([window, window * 3 // 5])
    wave[1, window * 3 // 5:] = 0
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnx_ir", "onnxscript")]
    for q in quiet:
        q.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (wave, lengths), dynamo=True, opset_version=18, verbose=False,
                                    input_names=["wave", "lengths"], output_names=["mean", "std"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},
                                                    {0: torch.export.Dim("batch", min=1)}))
    program.save(str(fp32), external_data=False)
    final = out / ENCODER_FILE
    if int8:
        quantize_int8(fp32, final)
        fp32.unlink()
    else:
        fp32.replace(final)
    # parity on a batch of another size than the traced one
    x = (0.1 * torch.randn(3, window, generator=g)).numpy()
    lens = np.array([window, window // 2, window // 5], np.int64)
    for i, n in enumerate(lens):
        x[i, n:] = 0
    with torch.inference_mode():
        ref = model(torch.from_numpy(x), torch.from_numpy(lens))[0].numpy()
    got = ort.InferenceSession(str(final), providers=["CPUExecutionProvider"]).run(
        ["mean"], {"wave": x, "lengths": lens})[0]
    digest = model.ser.config.checksum
    info = {
        "source": source, "checksum_of_source": digest,
        "layers": int(ref.shape[1]), "dim": int(ref.shape[-1]), "window_samples": int(window),
        "sample_rate": 16000, "precision": "int8" if int8 else "fp32",
        "outputs": "mean, std (batch, layers, dim): hidden layers 0..max_layers, layer-normalised per "
                   "frame, pooled over valid frames",
        "parity_max_abs_diff_mean": float(np.abs(ref - got).max()),
        "sha256": hashlib.sha256(final.read_bytes()).hexdigest(),
        "size_mb": round(final.stat().st_size / 1e6, 2),
        "torch_version": torch.__version__, "onnxruntime_version": ort.__version__,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info

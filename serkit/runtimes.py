"""What runs a model for the :class:`~serkit.scorer.Scorer`: ``logits(windows, lengths)``.

- :class:`TorchRuntime`: a PyTorch module (a bundle's CNN-LSTM or pretrained model); torch is
  imported only when such a runtime is made.
- :class:`OnnxRuntime`: an ONNX graph from ``serkit export --onnx`` (inputs ``wave``,
  ``lengths``; output ``logits``), run by onnxruntime.
- :class:`EncoderHeadRuntime`: a frozen speech encoder as an ONNX graph (inputs ``wave``,
  ``lengths``; outputs ``mean`` and ``std`` of every kept hidden layer over the valid frames,
  (batch, layers, dim) each) followed by a small head computed in NumPy. This is how the
  shipped default model runs: no torch at all.

ONNX sessions are cached per process and file (onnxruntime's ``run`` is thread-safe), so a web
server's request threads share one.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from serkit.models.configs import SPEAKER_KEYS, EncoderHeadConfig
from serkit.speaker import SpeakerHead


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool for running windows in parallel (onnxruntime releases the GIL)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="serkit-encoder")


@functools.lru_cache(maxsize=8)
def onnx_session(path: str, threads: int | None = None) -> Any:
    """One onnxruntime CPU session per (file, threads) and process."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("this model runs on onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


class TorchRuntime:
    """A PyTorch module ``(wave, lengths) -> logits`` in eval mode, run under inference_mode."""

    name = "torch"

    def __init__(self, module: Any):
        self.module = module.eval()

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(windows), torch.from_numpy(lengths)).float().numpy()


class OnnxRuntime:
    """An exported waveform model: ONNX inputs ``wave`` (batch, samples) float32 and ``lengths``
    (batch,) int64, output ``logits`` (batch, classes)."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.session = onnx_session(str(self.path), threads)

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"wave": windows, "lengths": lengths})[0]


class NumpyHead:
    """The head of an encoder-head model in NumPy: the same computation as
    :class:`serkit.models.encoder_head.EncoderHead` in eval mode (tested to match it).

    layer statistics (batch, layers, dim) ``mean`` and ``std`` -> pick ``layers`` -> features
    (mean, or mean and std, per layer) -> standardise with the training set's ``feat_mean`` and
    ``feat_std`` -> a softmax-weighted sum over layers (``layer_logits``) or their concatenation
    -> MLP (Linear, ReLU, Linear) or Linear -> logits (batch, classes).
    """

    def __init__(self, state: dict[str, np.ndarray], config: dict[str, Any]):
        c = EncoderHeadConfig(**{k: v for k, v in config.items() if k in EncoderHeadConfig.__dataclass_fields__})
        self.layers, self.stats, self.combine = list(c.layers), c.pooling == "stats", c.combine
        self.s = {k: np.asarray(v, np.float32) for k, v in state.items()}
        layers = sorted({k.split(".")[1] for k in self.s if k.startswith("mlp.")}, key=int)   # mlp.<i>.weight
        needed = ["feat_mean", "feat_std", *(["layer_logits"] if self.combine == "weighted" else []),
                  *(f"mlp.{i}.{p}" for i in layers for p in ("weight", "bias"))]
        missing = [k for k in needed if k not in self.s]
        if missing or not layers:
            raise ValueError(f"the head's weights lack {', '.join(missing) or 'linear layers'}")
        self.linear = [(self.s[f"mlp.{i}.weight"], self.s[f"mlp.{i}.bias"]) for i in layers]
        has = all(k in self.s for k in SPEAKER_KEYS)
        self.speaker = SpeakerHead(*(self.s[k] for k in SPEAKER_KEYS)) if has else None

    def __call__(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return self.read(self.inputs(mean, std))

    def read(self, x: np.ndarray) -> np.ndarray:
        """The head's logits of its inputs (:meth:`inputs`)."""
        for i, (weight, bias) in enumerate(self.linear):
            x = x @ weight.T + bias
            if i < len(self.linear) - 1:
                x = np.maximum(x, 0)
        return x.astype(np.float32)

    def both(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The head's logits and its speaker head's (:mod:`serkit.speaker`) of the same inputs,
        computed once; ValueError for a head without a speaker head."""
        if self.speaker is None:
            raise ValueError("this model has no speaker head (trained before serkit.speaker, or not a linear head)")
        x = self.inputs(mean, std)
        return self.read(x), self.speaker.logits(x).astype(np.float32)

    def inputs(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """The first Linear layer's input: the picked statistics, standardised and combined."""
        x = mean[:, self.layers]
        if self.stats:
            x = np.concatenate([x, std[:, self.layers]], axis=-1)             # (batch, layers, 2 * dim)
        x = (x - self.s["feat_mean"]) / self.s["feat_std"]
        if self.combine == "concat":
            x = x.reshape(len(x), -1)                                        # (batch, layers * features)
        else:
            w = np.exp(self.s["layer_logits"] - self.s["layer_logits"].max())
            x = np.einsum("l,blf->bf", w / w.sum(), x)                        # (batch, features)
        return x


class EncoderHeadRuntime:
    """A frozen ONNX encoder (layer statistics) and a :class:`NumpyHead`.

    Each window runs through the encoder ALONE (batch of one), in ``threads`` parallel threads
    of one core each: an int8 graph quantises its activations with one scale per call, so in a
    batch a window's numbers would depend on the other windows (tests/test_encoder_head.py
    shows a batched call moving them).
    Alone, a clip gets the same answer in ``serkit predict``, the web app and evaluation.
    """

    name = "onnx"

    def __init__(self, encoder: str | os.PathLike, head: NumpyHead, threads: int | None = None):
        self.encoder_path = Path(encoder)
        self.session = onnx_session(str(self.encoder_path), 1)
        self.threads = threads or os.cpu_count() or 1
        self.head = head

    def _one(self, window: np.ndarray, length: np.ndarray) -> list[np.ndarray]:
        return self.session.run(["mean", "std"], {"wave": window[None], "lengths": length[None]})

    def stats(self, windows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer mean and std over valid frames, (batch, layers, dim) each."""
        if len(windows) == 1 or self.threads == 1:
            out = [self._one(w, n) for w, n in zip(windows, lengths)]
        else:
            out = list(_pool(self.threads).map(self._one, windows, lengths))
        return np.concatenate([m for m, _ in out]), np.concatenate([s for _, s in out])

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.head(*self.stats(windows, lengths))

    @property
    def can_adapt(self) -> bool:
        """Whether the head carries a speaker head (same-speaker adaptation, :mod:`serkit.speaker`)."""
        return self.head.speaker is not None

    def logits_and_speaker(self, windows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The head's logits and its speaker head's, from one pass of the encoder."""
        return self.head.both(*self.stats(windows, lengths))


def fingerprint(predictor: Any) -> str:
    """A digest of what decides a model's answers: its configuration less the card's figures and
    training notes (``metrics``, ``training``, which ``evaluate --card`` and a retrain rewrite),
    the speech detector and segment limit it answers with where they are not its own,
    and its weights: the ONNX graph it runs (an export's file, an encoder head's encoder graph),
    an encoder head's arrays, a PyTorch module's tensors. Two seeds of one recipe differ; the
    same bundle copied elsewhere, or its card rewritten, does not."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in predictor.config.items() if k not in ("metrics", "training")},
                        sort_keys=True, default=str).encode())
    scorer = getattr(predictor, "scorer", None)     # a detector other than the model's own (--vad, $SERKIT_VAD)
    if scorer is not None:
        from serkit.scorer import MAX_SEGMENT_S
        from serkit.vad import vad_name          # (auto is silero where silero runs)
        used = (vad_name(scorer.vad), float(scorer.max_segment_s))
        if used != (vad_name(predictor.config.get("scoring", {}).get("vad") or "auto"), MAX_SEGMENT_S):
            h.update(repr(used).encode())
    rt = predictor.runtime
    for path in (getattr(predictor, "model_path", None), getattr(rt, "encoder_path", None)):
        if path is not None and Path(path).is_file():
            with open(path, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
    for key, array in sorted(getattr(getattr(rt, "head", None), "s", {}).items()):
        h.update(key.encode() + np.ascontiguousarray(array).tobytes())
    module = getattr(rt, "module", None)
    if module is not None:
        for key, tensor in module.state_dict().items():
            h.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

"""Fast path for frozen encoders: pooled per-layer embeddings, computed once, cached on disk.

With ``freeze="head"`` the encoder never changes, so each clip's pooled hidden layers (the
mean and standard deviation of every layer over its real frames,
:meth:`~serkit.models.pretrained.PretrainedSER.layer_stats`, (layers, dim) each) are computed
once and only the head trains on them: seconds per epoch instead of minutes. Mean and stats
pooling share the cache. Entries are safetensors files under
``<cache>/embeddings/<settings digest>/``; the settings digest covers the backbone (name or
folder, revision, sha256 of its weights), per-layer normalisation, the feature
extractor's settings, the sample rate and the model window; an entry's name covers the file's
absolute path, size and modification time, so a changed backbone, window or file is computed
again. A ``settings.json`` beside the entries says what the digest stands for.

Each clip is embedded as evaluation sees it (centre window of ``clip_samples``, no
augmentation): gain/noise augmentation and random crops do NOT apply on this path. Train with
``--pooling attention`` (or ``freeze`` other than ``head``) to go through waveforms instead.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from safetensors.numpy import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from serkit.audio import pad_or_trim
from serkit.manifest import Utterance

CACHE_FORMAT = 1


class EmbeddingCache:
    """Per-clip pooled embeddings of one encoder setting; counts ``hits`` and ``misses``."""

    def __init__(self, root: str | os.PathLike | None, settings: dict[str, Any]):
        blob = json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True, default=str)
        self.digest = hashlib.sha1(blob.encode()).hexdigest()[:20]
        self.folder = Path(root) / self.digest if root is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            info = self.folder / "settings.json"
            if not info.is_file():
                info.write_text(json.dumps(json.loads(blob), indent=2) + "\n", encoding="utf-8")
        self.hits = 0
        self.misses = 0

    def _entry(self, path: str | os.PathLike) -> Path:
        p = Path(path).resolve()
        st = p.stat()
        return self.folder / (hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest() + ".safetensors")

    def load(self, path: str | os.PathLike) -> dict[str, np.ndarray] | None:
        """The entry of ``path`` ({"mean", "std"}: (layers, dim) each), or None."""
        if self.folder is None:
            self.misses += 1
            return None
        entry = self._entry(path)
        if entry.is_file():
            self.hits += 1
            return load_file(str(entry))
        self.misses += 1
        return None

    def save(self, path: str | os.PathLike, stats: dict[str, np.ndarray]) -> None:
        if self.folder is None:
            return
        entry = self._entry(path)
        tmp = entry.with_name(f"{entry.stem}.{os.getpid()}.tmp")
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in stats.items()}, str(tmp))
        os.replace(tmp, entry)


def embed_clips(model: torch.nn.Module, utts: list[Utterance], waves: list[np.ndarray], clip_samples: int,
                cache_dir: str | os.PathLike | None, batch_size: int = 16, progress: bool = True,
                device: str = "cpu") -> tuple[np.ndarray, EmbeddingCache]:
    """The head's input (clips, layers, features) for ``waves`` through the frozen ``model``,
    each clip's centre window of ``clip_samples``; layer statistics come from the cache where
    it has them (one cache serves mean and stats pooling)."""
    cache = EmbeddingCache(cache_dir, {**model.cache_identity(), "clip_samples": clip_samples})
    stats: list[dict[str, np.ndarray] | None] = [cache.load(u.path) for u in utts]
    todo = sorted((i for i, e in enumerate(stats) if e is None), key=lambda i: len(waves[i]))
    model.eval().to(device)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("embedding clips", total=len(todo))
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            wave = np.stack([pad_or_trim(waves[i], clip_samples, crop="center") for i in idx]).astype(np.float32)
            lengths = torch.tensor([min(len(waves[i]), clip_samples) for i in idx])
            with torch.inference_mode():
                mean, std = (t.float().cpu().numpy()
                             for t in model.layer_stats(torch.from_numpy(wave).to(device), lengths.to(device)))
            for k, i in enumerate(idx):
                stats[i] = {"mean": mean[k], "std": std[k]}
                cache.save(utts[i].path, stats[i])
            bar.advance(task, len(idx))
    model.to("cpu")
    mean = torch.from_numpy(np.stack([s["mean"] for s in stats]))  # type: ignore[index]
    std = torch.from_numpy(np.stack([s["std"] for s in stats]))    # type: ignore[index]
    return model.pool(mean, std).numpy().astype(np.float32), cache


class EmbeddingDataset(Dataset):
    """(pooled embedding (layers, features), 0, label index): the batch shape SERModule expects."""

    def __init__(self, pooled: np.ndarray, labels: list[int]):
        self.pooled, self.labels = torch.from_numpy(pooled), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.pooled[i], 0, self.labels[i]


def embedding_loaders(model: torch.nn.Module, utts: list[Utterance], waves: list[np.ndarray], y: list[int],
                      sel: dict[str, list[int]], cfg: Any, clip_samples: int):
    """For :func:`serkit.training.train`: the head to train, a ``loader(part, train)`` factory over
    cached embeddings, and what to record about the cache in the bundle."""
    root = Path(cfg.cache_dir) / "embeddings" if cfg.cache_dir else None
    used = sorted({i for p in ("train", "val") for i in sel[p]})
    gpu = cfg.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    pooled, cache = embed_clips(model, [utts[i] for i in used], [waves[i] for i in used], clip_samples,
                                root, progress=cfg.progress, device="cuda" if gpu else "cpu")
    row = {i: k for k, i in enumerate(used)}

    def loader(part: str, train_: bool) -> DataLoader:
        ds = EmbeddingDataset(pooled[[row[i] for i in sel[part]]], [y[i] for i in sel[part]])
        return DataLoader(ds, batch_size=cfg.batch_size, shuffle=train_,
                          drop_last=train_ and len(ds) > cfg.batch_size)

    note = {"hits": cache.hits, "misses": cache.misses,
            "augment": "not applied: the head trains on cached embeddings of each clip's centre window"}
    if cfg.progress:
        print(f"embedding cache: {cache.hits} hits, {cache.misses} computed"
              + (f" ({cache.folder})" if cache.folder else "")
              + ("; augmentation does not apply to cached embeddings" if cfg.augment else ""), flush=True)
    return model.head, loader, {"embedding_cache": note}

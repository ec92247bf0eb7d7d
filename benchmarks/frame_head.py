"""Does a head over the frozen encoder's frames beat the shipped head over their mean?

    python benchmarks/frame_head.py [--backbone ../shared/models/whisper-base] [--manifest data/manifest.csv]
                                    [--epochs 20] [--hidden 128] [--folds 0 1 2 3 4] [--loco]

The shipped default pools layers 1-4 of Whisper-base over the speech span (a mean per layer)
and fits a logistic regression. Here the same layers' frames (layer-normalised, as the shipped
graph normalises them; fp32 PyTorch, so the baseline below is recomputed from the same frames)
feed a small head, trained by a plain PyTorch loop (a probe of whether such a head is worth
building into serkit's Lightning training, not a product):

    frames (layers 1-4, T, 512) -> standardised per layer -> softmax-weighted sum over layers
      -> Linear 512->H, ReLU -> attentive statistics pooling (weighted mean and std over the
      valid frames) -> dropout -> Linear -> 6 emotions

trained with AdamW for a fixed number of epochs (no early stopping: nothing held out picks the
epoch), loss weighted as the shipped head's (``head_variants.plan_weights``: serkit's own pool
plan, classes and corpora balanced). Printed for each fold
of the pool's 5-fold speaker CV (the folds of every CV in the README) and, with ``--loco``, each
held-out corpus: the paired baseline (standardised logistic regression, C 0.003, on the mean of
the same frames) and the frame head; UAR on held-out speakers, ASED on sentences 01-02.
Frames are cached under the serkit cache (about 5 GB, fp16; 5 minutes to compute here), then
about 3-8 minutes per split. RESULTS-default.md ("A head over the frames") has what it printed.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_probe import LABELS, pool_features  # noqa: E402
from head_variants import CORPORA, Bench, lr, plan_weights, uar  # noqa: E402

from serkit.audio import CACHE_ROOT  # noqa: E402
from serkit.splits import speaker_folds  # noqa: E402

LAYERS = (1, 2, 3, 4)


def frames_of(pool, backbone: str) -> tuple[np.ndarray, np.ndarray]:
    """(clips, layers, frames, dim) fp16 memmap of layers 1-4 over each clip's speech window,
    and the number of valid frames per clip."""
    from serkit.models.pretrained import PretrainedConfig, PretrainedSER

    window = pool.window
    key = hashlib.sha256(("|".join(f"{u.path}:{a}:{b}" for u, (a, b) in zip(pool.utts, pool.spans))
                          + backbone).encode()).hexdigest()[:16]
    folder = Path(CACHE_ROOT) / "frames" / key
    n = len(pool.utts)
    lens = np.array([min(b - a, window) for a, b in pool.spans], np.int64)
    n_frames = ((lens + 159) // 160 + 1) // 2
    T = ((window + 159) // 160 + 1) // 2
    shape = (n, len(LAYERS), min(T, window // 320), 512)
    done = folder / "done"
    if done.is_file():
        return np.lib.format.open_memmap(folder / "frames.npy", mode="r"), np.minimum(n_frames, shape[2])
    folder.mkdir(parents=True, exist_ok=True)
    ser = PretrainedSER(PretrainedConfig(backbone=backbone, max_layers=max(LAYERS), freeze="head",
                                         n_classes=2)).eval()
    out = np.lib.format.open_memmap(folder / "frames.npy", mode="w+", dtype=np.float16, shape=shape)
    t = time.time()
    with torch.inference_mode():
        for i in range(0, n, 32):
            rows = np.zeros((min(32, n - i), window), np.float32)
            for j, (w, (a, b)) in enumerate(zip(pool.waves[i:i + 32], pool.spans[i:i + 32])):
                c = w[a:b][:window]
                rows[j, :len(c)] = c
            hs, mask = ser.hidden_states(torch.from_numpy(rows), torch.from_numpy(lens[i:i + 32]))
            out[i:i + len(rows)] = hs[:, list(LAYERS), :shape[2]].numpy().astype(np.float16)
            if i % 640 == 0:
                print(f"  frames {i}/{n} ({time.time() - t:.0f} s)", flush=True)
    out.flush()
    done.write_text("ok\n")
    return np.lib.format.open_memmap(folder / "frames.npy", mode="r"), np.minimum(n_frames, shape[2])


class FrameHead(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden: int = 128, dropout: float = 0.3,
                 n_classes: int = 6):
        super().__init__()
        self.register_buffer("mean", mean)            # (layers, dim)
        self.register_buffer("std", std)
        self.layer_logits = nn.Parameter(torch.zeros(mean.shape[0]))
        self.proj = nn.Sequential(nn.Dropout(0.1), nn.Linear(mean.shape[1], hidden), nn.ReLU())
        self.att = nn.Sequential(nn.Linear(hidden, 64), nn.Tanh(), nn.Linear(64, 1))
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_classes))

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean[None, :, None]) / self.std[None, :, None]          # (B, L, T, D)
        x = torch.einsum("l,bltd->btd", self.layer_logits.softmax(0), x)
        h = self.proj(x)                                                       # (B, T, H)
        valid = torch.arange(h.shape[1])[None, :] < n[:, None]
        a = self.att(h).squeeze(-1).masked_fill(~valid, -1e4).softmax(1)[..., None]
        mu = (a * h).sum(1)
        sd = torch.sqrt(((a * (h - mu[:, None]) ** 2).sum(1)).clamp_min(1e-5))
        return self.out(torch.cat([mu, sd], -1))


def train_head(frames, n_frames, y, weights: np.ndarray, tr: np.ndarray, epochs: int, seed: int = 0,
               hidden: int = 128) -> FrameHead:
    """A FrameHead trained on the rows ``tr``, their loss weighted by ``weights`` (one per row of ``tr``)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(tr)
    sample = rng.choice(idx, min(1500, len(idx)), replace=False)
    xs = torch.from_numpy(np.asarray(frames[np.sort(sample)], np.float32))     # (S, L, T, D)
    m = (torch.arange(xs.shape[2])[None, :] < torch.from_numpy(n_frames[np.sort(sample)])[:, None])
    sel = xs.permute(1, 0, 2, 3)[:, m]                                          # (L, valid frames, D)
    model = FrameHead(sel.mean(1), sel.std(1) + 1e-5, hidden=hidden)
    del xs, sel
    w = torch.from_numpy(np.asarray(weights)).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    steps = epochs * int(np.ceil(len(idx) / 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    yt = torch.from_numpy(y[idx])
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(idx))
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            rows = idx[b]
            srt = np.argsort(rows)
            x = torch.from_numpy(np.asarray(frames[rows[srt]], np.float32))
            inv = np.argsort(srt)
            x = x[inv]
            loss = (F.cross_entropy(model(x, torch.from_numpy(n_frames[rows])), yt[b], reduction="none") * w[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def predict(model, frames, n_frames, rows: np.ndarray) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), 256):
            r = rows[i:i + 256]
            out.append(model(torch.from_numpy(np.asarray(frames[r], np.float32)),
                             torch.from_numpy(n_frames[r])).argmax(-1).numpy())
    return np.concatenate(out)


def scores(pool, te: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    judged = pool.judged[te]
    row = {"pool": uar(pool.y[te][judged], pred[judged])}
    for c in CORPORA:
        sel = judged & (pool.corpus[te] == c)
        if sel.any():
            row[c] = uar(pool.y[te][sel], pred[sel])
    return row


def fmt(row: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in row.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="../shared/models/whisper-base")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--loco", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    pool = pool_features(args.manifest)
    frames, n_frames = frames_of(pool, str(Path(args.backbone).resolve()))
    print(f"{len(pool.utts)} clips, frames {frames.shape}", flush=True)
    mean_feats = np.zeros((len(pool.utts), len(LAYERS) * frames.shape[-1]), np.float32)
    for i in range(0, len(pool.utts), 256):
        x = np.asarray(frames[i:i + 256], np.float32)
        m = (np.arange(x.shape[2])[None, :] < n_frames[i:i + 256, None])[:, None, :, None]
        mean_feats[i:i + 256] = ((x * m).sum(2) / m.sum(2)).reshape(len(x), -1)
    splits = []
    folds = list(speaker_folds(pool.utts, 5, seed=0))
    for k in args.folds:
        parts = np.array(folds[k])
        splits.append((f"fold {k}", parts != "test", parts == "test"))
    if args.loco:
        splits += [(f"LOCO {c}", pool.corpus != c, pool.corpus == c) for c in CORPORA]
    weigh = plan_weights(Bench(pool), corpora=True)     # as `serkit train --balance-corpora` weighs rows
    res = {}
    for name, tr, te in splits:
        t = time.time()
        w = weigh(tr)
        base = lr().fit(mean_feats[tr], pool.y[tr], logisticregression__sample_weight=w).predict(mean_feats[te])
        head = train_head(frames, n_frames, pool.y, w, tr, args.epochs, hidden=args.hidden)
        pred = predict(head, frames, n_frames, np.flatnonzero(te))
        res[name] = (scores(pool, te, base), scores(pool, te, pred))
        print(f"{name:<12} LR on means: {fmt(res[name][0])}\n{'':<12} frame head:  {fmt(res[name][1])}"
              f"  ({time.time() - t:.0f} s)", flush=True)
    cv = [v for k, v in res.items() if k.startswith("fold")]
    if cv:
        for i, label in enumerate(("LR on means", "frame head")):
            mean = {k: np.mean([r[i][k] for r in cv]) for k in cv[0][i]}
            print(f"CV mean ({len(cv)} folds) {label:<12} {fmt(mean)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training on a pool of corpora with different sizes and emotion sets (serkit.pool): class
weights over the pool, corpus balancing, corpus label masks, and a small end-to-end run."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synth import tiny_config, write_tone_corpus

from serkit.cli import main
from serkit.data import ClipDataset
from serkit.embeddings import EmbeddingDataset
from serkit.manifest import Utterance, write_manifest
from serkit.pool import inverse_frequency, masked_cross_entropy, plan_pool, pool_loader
from serkit.training import SERModule, TrainConfig, train

LABELS = ["angry", "disgust", "sad"]
X = LABELS.index("disgust")


def pool(a: dict[str, int], b: dict[str, int]) -> tuple[list[Utterance], list[int]]:
    """Corpus ``a`` and corpus ``b`` with the given clips per emotion (2 speakers each)."""
    utts = []
    for corpus, counts in (("a", a), ("b", b)):
        for emotion, n in counts.items():
            utts += [Utterance(corpus, f"s{k % 2}", emotion, Path(f"/{corpus}/{emotion}{k}.wav")) for k in range(n)]
    return utts, [LABELS.index(u.emotion) for u in utts]


def everything_trains(utts):
    return {"train": list(range(len(utts))), "val": [], "test": []}


# --------------------------------------------------------------------------- the loss

@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_loss_with_every_class_allowed_is_cross_entropy(smoothing, weighted):
    torch.manual_seed(0)
    logits, y = torch.randn(9, 4), torch.randint(0, 4, (9,))
    weight = torch.rand(4) + 0.5 if weighted else None
    ours = masked_cross_entropy(logits, y, torch.ones(9, 4, dtype=torch.bool), weight, smoothing)
    assert torch.allclose(ours, F.cross_entropy(logits, y, weight=weight, label_smoothing=smoothing))


def test_a_corpus_without_a_class_does_not_push_it_down():
    """Corpus b has no disgust: with the mask its clips leave the disgust logit alone (zero
    gradient, label smoothing included); without it they push disgust down, as "never disgust"."""
    utts, y = pool({"angry": 2, "disgust": 2, "sad": 2}, {"angry": 3, "sad": 3})
    sel = everything_trains(utts)
    b = [i for i, u in enumerate(utts) if u.corpus == "b"]
    masked = plan_pool(utts, y, sel, LABELS, class_weights=False, corpus_label_mask=True)
    plain = plan_pool(utts, y, sel, LABELS, class_weights=False)      # the default: no mask
    assert masked.corpus_labels == {"a": LABELS, "b": ["angry", "sad"]}
    assert plain.masks is None and masked.masks[b].tolist() == [[True, False, True]] * len(b)

    def grad(plan, cfg):
        class Logits(torch.nn.Module):  # the batch's "wave" is the logits themselves
            def forward(self, wave, lengths):
                return wave

        module = SERModule(Logits(), cfg, plan.class_weights)
        module.log = lambda *a, **k: None
        logits = torch.tensor([[0.5, 1.0, -0.3]] * len(b), requires_grad=True)
        batch = (logits, torch.zeros(len(b)), torch.tensor([y[i] for i in b]))
        if plan.masks is not None:
            batch += (torch.from_numpy(plan.masks[b]),)
        module.training_step(batch, 0).backward()
        return logits.grad

    for cfg in (TrainConfig(label_smoothing=0.1), TrainConfig(label_smoothing=0.1, mixup=0.4)):
        torch.manual_seed(0)
        assert torch.all(grad(masked, cfg)[:, X] == 0)
        torch.manual_seed(0)
        assert torch.all(grad(plain, cfg)[:, X] > 0)  # gradient descent lowers the disgust logit


def test_own_class_and_held_out_corpora_are_never_masked():
    utts, y = pool({"angry": 2, "disgust": 2, "sad": 2}, {"angry": 2, "sad": 2})
    utts.append(Utterance("c", "s0", "disgust", Path("/c/d.wav")))     # a corpus outside training
    y.append(X)
    train = [i for i, u in enumerate(utts) if u.corpus != "c"]
    plan = plan_pool(utts, y, {"train": train, "val": [], "test": [len(utts) - 1]}, LABELS, corpus_label_mask=True)
    assert plan.masks[-1].all()
    assert "c" not in plan.corpus_labels


def test_no_mask_when_every_corpus_has_every_class():
    utts, y = pool({"angry": 2, "disgust": 1, "sad": 2}, {"angry": 1, "disgust": 1, "sad": 1})
    assert plan_pool(utts, y, everything_trains(utts), LABELS).masks is None


# --------------------------------------------------------------------------- class weights, balancing

def test_class_weights_are_inverse_frequency_over_the_pool():
    # a: 10 angry, 2 disgust, 10 sad; b (no disgust): 30 angry, 30 sad -> 40 / 2 / 40 of 82
    utts, y = pool({"angry": 10, "disgust": 2, "sad": 10}, {"angry": 30, "sad": 30})
    plan = plan_pool(utts, y, everything_trains(utts), LABELS)
    expected = torch.tensor([82 / (3 * 40), 82 / (3 * 2), 82 / (3 * 40)])
    assert torch.allclose(plan.class_weights, expected)
    # every class carries the same total weight
    per_class = np.bincount(y, weights=plan.class_weights.numpy()[y], minlength=3)
    assert np.allclose(per_class, per_class[0])


def test_class_weights_follow_the_balanced_draw():
    utts, y = pool({"angry": 10, "disgust": 2, "sad": 10}, {"angry": 30, "sad": 30})
    plan = plan_pool(utts, y, everything_trains(utts), LABELS, balance_corpora=True)
    # each corpus weighs 1: a's clips 1/22 each, b's 1/60 -> angry 10/22 + 1/2, disgust 2/22, sad as angry
    counts = np.array([10 / 22 + 0.5, 2 / 22, 10 / 22 + 0.5])
    assert torch.allclose(plan.class_weights, torch.tensor(2 / (3 * counts), dtype=torch.float32))
    assert plan.sample_weights.sum() == pytest.approx(2.0)
    assert inverse_frequency(np.array(y), 3).tolist() == pytest.approx([82 / 120, 82 / 6, 82 / 120])


def test_a_class_with_no_training_clip_is_refused():
    utts, y = pool({"angry": 2, "disgust": 2, "sad": 2}, {"angry": 2, "sad": 2})
    train = [i for i, u in enumerate(utts) if u.emotion != "disgust"]
    with pytest.raises(ValueError, match="disgust have no clip in the training part"):
        plan_pool(utts, y, {"train": train, "val": [], "test": []}, LABELS)


def test_balanced_corpora_are_drawn_equally():
    utts, y = pool({"angry": 5, "disgust": 5, "sad": 10}, {"angry": 90, "sad": 90})  # 20 vs 180 clips
    idx = list(range(len(utts)))
    for balance, share in ((True, 0.5), (False, 0.1)):
        plan = plan_pool(utts, y, {"train": idx, "val": [], "test": []}, LABELS, balance_corpora=balance)
        ds = EmbeddingDataset(np.arange(len(utts), dtype=np.float32)[:, None], y)  # item = its index
        loader = pool_loader(ds, idx, True, plan, batch_size=50, seed=1)
        drawn = [int(i) for _ in range(10) for batch in loader for i in batch[0][:, 0]]
        assert len(drawn) == 10 * 200
        from_a = sum(utts[i].corpus == "a" for i in drawn) / len(drawn)
        assert from_a == pytest.approx(share, abs=0.04)


def test_loaders_append_masks_on_both_paths():
    utts, y = pool({"angry": 2, "disgust": 2, "sad": 2}, {"angry": 2, "sad": 2})
    idx = list(range(len(utts)))
    plan = plan_pool(utts, y, {"train": idx, "val": [], "test": []}, LABELS, corpus_label_mask=True)
    waves = [np.zeros(800, np.float32)] * len(utts)
    for ds in (ClipDataset(waves, y, 800), EmbeddingDataset(np.zeros((len(utts), 2, 4), np.float32), y)):
        *_, labels, masks = next(iter(pool_loader(ds, idx, False, plan, batch_size=len(utts))))
        assert labels.tolist() == y and masks.tolist() == plan.masks.tolist()


# --------------------------------------------------------------------------- end to end

def two_corpora(root: Path) -> Path:
    """Tone corpora ``a`` (angry, happy, sad) and a smaller ``b`` without sad, in one manifest."""
    a = write_tone_corpus(root / "a", speakers=6, per_emotion=3, corpus="a", seed=0)
    b = write_tone_corpus(root / "b", speakers=4, per_emotion=2, corpus="b", seed=1, emotions=("angry", "happy"))
    return write_manifest(a.utterances + b.utterances, root / "pool.csv")


def test_training_on_a_pool_records_each_corpus_classes(tmp_path):
    manifest = two_corpora(tmp_path)
    report = train(manifest, tmp_path / "run", tiny_config(epochs=6, balance_corpora=True, corpus_label_mask=True))
    assert report["uar"] >= 0.6
    assert set(report["per_corpus"]) <= {"a", "b"} and report["per_corpus"]
    training = json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())["training"]
    assert training["pool"] == {"corpus_labels": {"a": ["angry", "happy", "sad"], "b": ["angry", "happy"]},
                                "masked": True, "balanced_corpora": True}
    assert training["config"]["corpus_label_mask"] is True
    report_md = (tmp_path / "run" / "eval" / "report.md").read_text()
    assert "## Per corpus" in report_md


def test_frozen_encoder_head_trains_on_a_masked_pool(tmp_path, monkeypatch):
    """The cached-embedding path gets the same masks and balanced draw as the waveform path."""
    from synth import make_backbone

    import serkit.pool

    served = []
    original = serkit.pool.pool_loader

    def spy(ds, idx, train_, plan, *a, **k):
        loader = original(ds, idx, train_, plan, *a, **k)
        served.append((type(ds).__name__, train_, len(next(iter(loader)))))
        return loader

    monkeypatch.setattr("serkit.training.pool_loader", spy)
    manifest = two_corpora(tmp_path)
    cfg = TrainConfig(model="pretrained", epochs=2, patience=50, batch_size=8, lr=5e-3, clip_seconds=0.5,
                      cache_dir=None, progress=False, seed=0, balance_corpora=True, corpus_label_mask=True,
                      model_options={"backbone": str(make_backbone(tmp_path, "wav2vec2")), "head_hidden": 16})
    report = train(manifest, tmp_path / "run", cfg)
    assert report["n"] > 0
    assert ("EmbeddingDataset", True, 4) in served and ("EmbeddingDataset", False, 4) in served
    training = json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())["training"]
    assert training["pool"]["corpus_labels"]["b"] == ["angry", "happy"]


def test_cli_train_flags_reach_the_config(tmp_path, monkeypatch):
    import serkit.training

    seen = {}
    monkeypatch.setattr(serkit.training, "train", lambda m, o, cfg, resume=False, force=False: seen.setdefault("cfg", cfg) and {})
    assert main(["train", str(tmp_path / "m.csv"), "-o", str(tmp_path / "run")]) == 0
    assert (seen["cfg"].balance_corpora, seen["cfg"].corpus_label_mask) == (False, False)
    seen.clear()
    assert main(["train", str(tmp_path / "m.csv"), "-o", str(tmp_path / "run"),
                 "--balance-corpora", "--corpus-label-mask"]) == 0
    assert (seen["cfg"].balance_corpora, seen["cfg"].corpus_label_mask) == (True, True)


def test_leave_one_corpus_out_on_a_pool_of_four(tmp_path):
    """``--split corpus --test-corpus NAME`` for each corpus of a pool shaped like shared/corpora:
    sizes and speaker counts differ, two corpora lack disgust."""
    from serkit.splits import split

    six = ("angry", "happy", "sad", "fearful", "disgust", "neutral")
    shape = {"ravdess": (10, six), "emodb": (5, six), "nemo": (4, six[:4] + ("neutral",)),
             "ased": (12, ("angry", "happy", "sad", "fearful", "neutral"))}
    utts = [Utterance(c, f"{s:02d}", e, Path(f"/{c}/{s}/{e}{k}.wav"))
            for c, (n, emotions) in shape.items() for s in range(n) for e in emotions for k in range(2)]
    for corpus in shape:
        parts = split(utts, "corpus", test_corpus=corpus, seed=0)
        assert [p == "test" for p in parts] == [u.corpus == corpus for u in utts]
        groups = {p: {u.group for u, q in zip(utts, parts) if q == p} for p in ("train", "val")}
        assert groups["train"] and groups["val"] and not groups["train"] & groups["val"]
        assert Counter(u.emotion for u, p in zip(utts, parts) if p == "train").keys() == set(six)

"""Validation metrics during training come from torchmetrics (serkit.val_metrics): they equal the
reports' metrics (serkit.evaluation.metrics) over the whole validation split, and their states
reduce across processes with every clip counted once."""
from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, recall_score
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from serkit.evaluation import metrics
from serkit.training import SERModule, TrainConfig
from serkit.val_metrics import first_visits, validation_metrics

# 11 clips of classes 0 and 1 only; the model also predicts class 2, which no clip has
Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
PRED = np.array([0, 0, 2, 1, 0, 0, 1, 1, 2, 0, 1])


def logits_of(pred: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(pred), 3).float() * 3 - 1


class Logits(torch.nn.Module):
    """A model whose input is its output: the batch's "wave" is the logits."""

    def forward(self, wave, lengths):
        return wave


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_logged_validation_metrics_are_the_reports_metrics_over_the_whole_split():
    expected = metrics(Y, PRED)
    # the UAR of the classes the clips hold, not torchmetrics' macro recall (which also averages
    # in the predicted-but-absent class 2 as recall 0): the test tells the two apart
    assert expected["uar"] == pytest.approx(balanced_accuracy_score(Y, PRED))
    assert expected["uar"] != pytest.approx(recall_score(Y, PRED, average="macro", zero_division=0))
    # batches of 4: the mean of per-batch UARs is not the split's UAR
    per_batch = [metrics(Y[i:i + 4], PRED[i:i + 4])["uar"] for i in range(0, len(Y), 4)]
    assert np.mean(per_batch) != pytest.approx(expected["uar"])

    data = TensorDataset(logits_of(PRED), torch.full((len(Y),), 3), torch.from_numpy(Y))
    module = SERModule(Logits(), TrainConfig(), None, n_classes=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        logged = trainer.validate(module, DataLoader(data, batch_size=4), verbose=False)[0]
    assert logged["val_uar"] == pytest.approx(expected["uar"], abs=1e-6)
    assert logged["val_macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)
    assert logged["val_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (6, 3), (1, 2)])
def test_first_visits_marks_each_dataset_item_once(n, world):
    """What DistributedSampler hands each rank, less the padding first_visits marks, is the dataset."""
    data = list(range(n))
    per_rank = [list(DistributedSampler(data, num_replicas=world, rank=r, shuffle=False)) for r in range(world)]
    assert sum(map(len, per_rank)) > n or n % world == 0          # padding happens when n does not divide
    kept = []
    for r, items in enumerate(per_rank):
        seen = 0
        for batch in (items[i:i + 2] for i in range(0, len(items), 2)):   # batches of 2
            kept += [x for x, k in zip(batch, first_visits(n, world, r, seen, len(batch))) if k]
            seen += len(batch)
    assert sorted(kept) == data


def test_metric_states_of_two_processes_reduce_to_the_whole_split():
    """Each rank updates with its DistributedSampler share (padding dropped); the states merged as
    torchmetrics merges them across processes give the metrics of the whole split."""
    n, world = len(Y), 2
    logits, y = logits_of(PRED), torch.from_numpy(Y)
    ranks = []
    for r in range(world):
        idx = torch.tensor(list(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)))
        keep = first_visits(n, world, r, 0, len(idx))
        assert not keep.all() or r == 0                            # rank 1 repeats clip 0 as padding
        m = validation_metrics(3)
        m.update(logits[idx[keep]].argmax(1), y[idx[keep]])
        ranks.append(m)
    expected = metrics(Y, PRED)
    for name, key in (("val_uar", "uar"), ("val_macro_f1", "macro_f1"), ("val_accuracy", "accuracy")):
        merged = ranks[0][name]
        merged.merge_state(ranks[1][name])
        assert float(merged.compute()) == pytest.approx(expected[key], abs=1e-6), name


def long_corpus(root, speakers: int = 8, seed: int = 0):
    """Clips longer than the 0.5 s window of ``tiny_config``: per speaker and emotion, three tones
    of 1-2 s (several windows each) and one clip of three sounds with pauses between (three
    scoring units), ``E 1.2 s, F 0.5 s, E 1.2 s``, whose centre window holds only ``F``."""
    from synth import EMOTIONS, SR, tone_clip, write_clip
    from serkit.manifest import Utterance, write_manifest

    rng = np.random.default_rng(seed)
    gap = np.zeros(int(0.6 * SR), np.float32)
    utts = []
    for s in range(speakers):
        for k, emotion in enumerate(EMOTIONS):
            other = EMOTIONS[(k + 1) % len(EMOTIONS)]
            waves = [tone_clip(emotion, rng.uniform(1.0, 2.0), rng) for _ in range(3)]
            waves.append(np.concatenate([tone_clip(emotion, 1.2, rng), gap, tone_clip(other, 0.5, rng), gap,
                                         tone_clip(emotion, 1.2, rng)]))
            for j, wave in enumerate(waves):
                path = write_clip(root / f"spk{s}" / f"{emotion}_{j}.wav", wave)
                utts.append(Utterance(corpus="synth", speaker=f"spk{s}", emotion=emotion, path=path,
                                      duration=len(wave) / SR))
    return write_manifest(utts, root / "manifest.csv")


@pytest.mark.slow
def test_validation_during_training_scores_clips_as_the_scorer_does(tmp_path):
    """The metrics logged for the best epoch are those of the Predictor (the one scorer, at
    temperature 1: validation runs before calibration) on the validation clips, all of them longer
    than the window: each clip scored as its speech units, their window logits averaged."""
    import csv
    import json

    from serkit.audio import load_audio
    from serkit.inference import load_model
    from serkit.manifest import read_manifest
    from serkit.training import train
    from synth import tiny_config

    run = tmp_path / "run"
    # no class weights or label smoothing: val_loss is then the clips' mean negative log-likelihood
    train(long_corpus(tmp_path / "corpus"), run, tiny_config(epochs=4, class_weights=False, label_smoothing=0.0))
    best = json.loads((run / "bundle" / "config.json").read_text())["training"]["best_epoch"]
    with open(run / "metrics.csv", encoding="utf-8") as fh:
        logged = next(r for r in csv.DictReader(fh) if r["val_uar"] and int(r["epoch"]) == best)
    val = [u for u in read_manifest(run / "split.csv") if u.split == "val"]

    predictor = load_model(run / "bundle")
    predictor.temperature = 1.0
    analyses = predictor.analyse([load_audio(u.path) for u in val])
    assert all(a.n_samples > predictor.clip_samples for a in analyses)
    assert sum(len(a.segments) == 3 for a in analyses) == len(val) // 4        # the composite clips
    y = np.array([predictor.labels.index(u.emotion) for u in val])
    probs = np.stack([a.probabilities for a in analyses])
    expected = metrics(y, probs.argmax(1))
    assert float(logged["val_uar"]) == pytest.approx(expected["uar"], abs=1e-6)
    assert float(logged["val_macro_f1"]) == pytest.approx(expected["macro_f1"], abs=1e-6)
    assert float(logged["val_accuracy"]) == pytest.approx(expected["accuracy"], abs=1e-6)
    nll = -np.log(probs[np.arange(len(y)), y]).mean()
    assert float(logged["val_loss"]) == pytest.approx(nll, rel=1e-4)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_validation_of_clips_with_several_units_and_without_speech_is_the_scorers():
    """A validation epoch over clips of three units, of several windows, of one short window and
    of digital silence (no answer: wrong, and no class of its own) logs the metrics and the mean
    negative log-likelihood of the Predictor's answers at temperature 1; windows run a few at a time."""
    from serkit.audio import AudioSpec
    from serkit.data import UnitDataset, collate_units
    from serkit.inference import Predictor
    from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
    from synth import EMOTIONS, SR, tone_clip

    rng = np.random.default_rng(1)
    gap = np.zeros(int(0.6 * SR), np.float32)
    clips = [np.concatenate([tone_clip("sad", 1.2, rng), gap, tone_clip("happy", 0.5, rng), gap,
                             tone_clip("angry", 0.9, rng)]),
             tone_clip("happy", 1.7, rng), tone_clip("sad", 0.3, rng), np.zeros(SR, np.float32),
             tone_clip("angry", 1.1, rng)]
    y = [2, 1, 2, 0, 0]
    torch.manual_seed(3)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)).eval()
    spec = AudioSpec(clip_seconds=0.5)
    predictor = Predictor(model, {"labels": list(EMOTIONS), "audio": spec.to_dict(), "scoring": {"vad": "energy"}})
    analyses = predictor.analyse(clips)
    assert [len(a.segments) for a in analyses] == [3, 1, 1, 0, 1]
    pred = np.array([-1 if a.probabilities is None else int(np.argmax(a.probabilities)) for a in analyses])
    nll = np.mean([-np.log(a.probabilities[k]) for a, k in zip(analyses, y) if a.probabilities is not None])

    scorer = predictor.scorer
    data = UnitDataset(clips, y, [scorer.units(c)[0] for c in clips], scorer.cut)
    module = SERModule(model, TrainConfig(batch_size=2, label_smoothing=0.0), None, n_classes=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        logged = trainer.validate(module, DataLoader(data, batch_size=2, collate_fn=collate_units), verbose=False)[0]
    expected = metrics(np.array(y), pred)
    assert logged["val_uar"] == pytest.approx(expected["uar"], abs=1e-6)
    assert logged["val_macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)
    assert logged["val_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert logged["val_loss"] == pytest.approx(nll, rel=1e-5)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_no_answer_counts_as_wrong_and_is_no_class():
    """A clip without speech (answer -1 in the reports, the extra last class here) lowers recall
    and accuracy but adds no class to the macro-F1."""
    pred = PRED.copy()
    pred[[1, 7]] = -1
    m = validation_metrics(3)
    m.update(torch.from_numpy(np.where(pred < 0, 3, pred)), torch.from_numpy(Y))
    expected = metrics(Y, pred)
    got = {k: float(v) for k, v in m.compute().items()}
    assert got["val_uar"] == pytest.approx(expected["uar"], abs=1e-6)
    assert got["val_macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)
    assert got["val_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)

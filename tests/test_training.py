"""Calibration, reports, the training run folder, resume, and the CLI end to end."""
from __future__ import annotations

import csv
import json
import logging
import signal
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import serkit.audio
import serkit.callbacks as callbacks
import pytest

import serkit.training as training
from serkit.cli import main
from serkit.evaluation import evaluate_logits, expected_calibration_error, fit_temperature
from serkit.inference import softmax
from serkit.manifest import Utterance, read_manifest, write_manifest
from synth import EMOTIONS, tiny_config, trained_run, write_ravdess_tree, write_tone_corpus


# ------------------------------------------------------------------------------- calibration

def calibrated_at(temperature: float, n: int = 6000, classes: int = 4, seed: int = 0):
    """Logits and labels drawn so that softmax(logits / temperature) is exactly calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4.0, (n, classes))
    p = softmax(logits / temperature)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return logits, y


@pytest.mark.parametrize("true_t", [2.0, 0.5])
def test_fit_temperature_recovers_a_known_temperature(true_t):
    logits, y = calibrated_at(true_t)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(true_t, rel=0.15)
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits / t), y)
    assert after < before
    assert after < 0.03


def test_temperature_never_changes_predictions():
    logits, y = calibrated_at(2.0, n=500)
    t = fit_temperature(logits, y)
    np.testing.assert_array_equal(softmax(logits / t).argmax(1), logits.argmax(1))


def test_ece_of_a_hand_made_example():
    # two clips at confidence 0.9, one right; two at 0.6, both right
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    # bin 0.9: |0.5 - 0.9| * 2/4; bin 0.6: |1.0 - 0.6| * 2/4
    assert expected_calibration_error(probs, y) == pytest.approx(0.2 + 0.2)


# ------------------------------------------------------------------------------------ reports

def hand_made(tmp_path):
    """Six clips of three emotions (plus one the model does not know) and logits that get one wrong."""
    rows = [("c1", "s1", "angry", 0), ("c1", "s1", "angry", 0), ("c1", "s2", "angry", 1),
            ("c1", "s2", "happy", 1), ("c2", "s3", "happy", 1), ("c2", "s3", "sad", 2),
            ("c2", "s3", "neutral", 2)]
    utts = [Utterance(corpus=c, speaker=s, emotion=e, path=tmp_path / f"{i}.wav")
            for i, (c, s, e, _) in enumerate(rows)]
    logits = np.full((len(rows), 3), -1.0)
    for i, (*_, pred) in enumerate(rows):
        logits[i, pred] = 2.0
    return utts, logits


def test_evaluate_logits_metrics_and_files(tmp_path):
    utts, logits = hand_made(tmp_path)
    out = tmp_path / "eval"
    r = evaluate_logits(utts, logits, list(EMOTIONS), temperature=2.0, out_dir=out, title="test")

    # by hand: truth a a a h h s, predicted a a h h h s
    assert r["n"] == 6                                               # the neutral clip is left out
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["uar"] == pytest.approx((2 / 3 + 1 + 1) / 3)            # mean of per-class recalls
    f1 = {"angry": 2 * 1 * (2 / 3) / (1 + 2 / 3), "happy": 2 * (2 / 3) * 1 / (2 / 3 + 1), "sad": 1.0}
    assert r["macro_f1"] == pytest.approx(np.mean(list(f1.values())))
    assert r["weighted_f1"] == pytest.approx((3 * f1["angry"] + 2 * f1["happy"] + f1["sad"]) / 6)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert r["labels"] == list(EMOTIONS)
    assert r["classification_report"]["angry"]["recall"] == pytest.approx(2 / 3)
    assert r["classification_report"]["happy"]["precision"] == pytest.approx(2 / 3)
    assert set(r["per_corpus"]) == {"c1", "c2"}
    assert r["per_corpus"]["c1"]["accuracy"] == pytest.approx(3 / 4)
    assert r["per_corpus"]["c2"]["accuracy"] == pytest.approx(1.0)
    assert r["per_speaker"]["c1/s2"]["n"] == 2 and r["per_speaker"]["c1/s2"]["accuracy"] == pytest.approx(0.5)
    assert r["calibration"]["temperature"] == 2.0
    # confidences: softmax of (2, -1, -1) at T=1 and T=2
    conf1, conf2 = softmax(np.array([2.0, -1, -1]))[0], softmax(np.array([1.0, -0.5, -0.5]))[0]
    assert r["calibration"]["ece_before"] == pytest.approx(abs(5 / 6 - conf1))
    assert r["calibration"]["ece_after"] == pytest.approx(abs(5 / 6 - conf2))
    assert r["unknown_emotions"] == {"neutral": 1}

    for name in ("report.json", "report.md", "confusion_counts.png", "confusion_normalized.png",
                 "reliability.png", "predictions.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "report.json").read_text())
    assert saved["accuracy"] == pytest.approx(5 / 6) and saved["confusion_matrix"] == r["confusion_matrix"]
    md = (out / "report.md").read_text()
    assert "| 0.833 | " in md and "Evaluation: test (6 clips)" in md
    assert "| angry | 1.000 | 0.667 | 0.800 | 3 |" in md
    preds = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(preds) == 6
    assert [p["Predicted"] for p in preds] == ["angry", "angry", "happy", "happy", "happy", "sad"]
    assert float(preds[0]["Confidence"]) == pytest.approx(conf2, abs=1e-4)


def test_the_report_says_how_often_an_uncertain_flag_is_right(tmp_path):
    """The answers flagged uncertain are flagged as the scorer flags them, counted, and their
    accuracy set beside that of the others, before and after the temperature."""
    from serkit.scorer import Scorer

    labels = list(EMOTIONS)
    utts = [Utterance(corpus="c", speaker="s", emotion=e, path=tmp_path / f"{i}.wav")
            for i, e in enumerate(["angry", "angry", "happy", "sad"])]
    p = np.array([[0.9, 0.05, 0.05],      # sure, right
                  [0.45, 0.44, 0.11],     # near the runner-up: flagged, right
                  [0.30, 0.40, 0.30],     # top under 0.5: flagged, right
                  [0.70, 0.20, 0.10]])    # sure, wrong
    r = evaluate_logits(utts, np.log(p), labels, temperature=1.0, out_dir=tmp_path / "eval")
    flags = r["calibration"]["uncertain_after"]
    assert flags == {"share": 0.5, "accuracy_flagged": 1.0, "accuracy_unflagged": 0.5}
    assert r["calibration"]["uncertain_before"] == flags
    scorer = Scorer(None, labels, None)
    assert [scorer.is_uncertain(row) for row in p] == [False, True, True, False]
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert [row["Uncertain"] for row in rows] == ["no", "yes", "yes", "no"]
    assert "right 100.0 % of the time when flagged, 50.0 % otherwise" in (tmp_path / "eval" / "report.md").read_text()
    # a stricter threshold flags more; at a high temperature everything is flagged
    assert evaluate_logits(utts, np.log(p), labels, uncertain_below=0.8)["calibration"]["uncertain_after"]["share"] == 0.75
    hot = evaluate_logits(utts, np.log(p), labels, temperature=50.0)["calibration"]
    assert hot["uncertain_after"]["share"] == 1.0 and hot["uncertain_after"]["accuracy_unflagged"] is None


def test_clips_whose_words_give_the_emotion_away_are_left_out_of_every_figure(tmp_path):
    """ASED's emotion-specific sentences (03-07) are not judged: the metrics, calibration, flag
    figures and breakdowns leave them out and count them; predictions.csv still lists every
    clip (with Judged) and takes any path; the headline with them is kept beside."""
    labels = list(EMOTIONS)
    clip = lambda i, corpus, e, sentence: Utterance(  # noqa: E731
        corpus=corpus, speaker="s", emotion=e, sentence=sentence, path=tmp_path / f"odd, name {i}.wav")
    utts = [clip(0, "ased", "angry", "01"), clip(1, "ased", "happy", "02"),
            clip(2, "ased", "angry", "a5-03"), clip(3, "ased", "sad", "s4-05"),
            clip(4, "emodb", "sad", "a01"), clip(5, "ased", "sad", "")]
    right, wrong = [0.9, 0.05, 0.05], [0.05, 0.05, 0.9]
    p = np.array([right, [0.05, 0.9, 0.05], wrong, wrong, [0.05, 0.05, 0.9], [0.05, 0.05, 0.9]])
    r = evaluate_logits(utts, np.log(p), labels, out_dir=tmp_path / "eval")
    assert r["left_out"] == {"words_give_label": 2}
    assert r["n"] == 4 and r["accuracy"] == 1.0 and r["uar"] == 1.0
    assert r["all_clips"]["n"] == 6 and r["all_clips"]["accuracy"] == pytest.approx(5 / 6)
    assert r["per_corpus"]["ased"]["n"] == 3 and r["per_speaker"]["ased/s"]["n"] == 3
    assert r["calibration"]["uncertain_after"]["accuracy_unflagged"] == 1.0
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv", encoding="utf-8")))
    assert [row["File"] for row in rows] == [str(u.path) for u in utts]
    assert [row["Judged"] for row in rows] == ["yes", "yes", "no", "no", "yes", "yes"]
    assert "Left out of every figure: 2 clips whose words give their emotion away" in (
        tmp_path / "eval" / "report.md").read_text()
    # only such clips: judged all the same, and the report says what that means
    only = evaluate_logits(utts[2:4], np.log(p[2:4]), labels)
    assert only["n"] == 2 and only["left_out"] == {"words_give_label": 0}
    assert "words, not the voice" in only["caveat"]


def test_the_best_epoch_is_watched_on_the_judged_validation_clips_only(tmp_path, monkeypatch):
    """Early stopping and the best epoch watch the validation clips every figure judges: an ASED
    clip whose words give its emotion away (sentences 03-07) is not among them."""
    import dataclasses
    import lightning as L

    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2, corpus="ased")
    utts = [dataclasses.replace(u, sentence=f"{u.emotion[0]}1-03" if k % 2 else "01")
            for k, u in enumerate(corpus.utterances)]
    seen = []
    fit = L.Trainer.fit

    def spy(self, module, train_loader, val_loader, **kw):
        seen.append(len(val_loader.dataset))
        return fit(self, module, train_loader, val_loader, **kw)

    monkeypatch.setattr(L.Trainer, "fit", spy)
    training.train(utts, tmp_path / "run", tiny_config(epochs=1))
    val = [u for u in read_manifest(tmp_path / "run" / "split.csv") if u.split == "val"]
    assert seen == [sum(u.sentence == "01" for u in val)] and 0 < seen[0] < len(val)


def test_a_model_trained_in_epochs_is_refitted_with_the_validation_speakers(tmp_path, monkeypatch):
    """--refit-epochs: the best epoch is chosen as before, then the model trains again from the same
    initialisation on training + validation clips for that many epochs; the first run (identical
    to a run without the refit) fits the temperature and gives the validation figures, and the
    refitted weights are what the bundle serves and the test figures score."""
    import lightning as L
    from safetensors.numpy import load_file

    from serkit.model_card import model_card
    from serkit.scorer import Scorer

    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2)
    fits = []
    fit = L.Trainer.fit

    def spy(self, module, train_loader, *args, **kw):
        fits.append((self.max_epochs, len(train_loader.dataset)))
        return fit(self, module, train_loader, *args, **kw)

    monkeypatch.setattr(L.Trainer, "fit", spy)
    detected = []      # the speech detector's runs: the refit reuses the validation clips' units
    units = Scorer.units
    monkeypatch.setattr(Scorer, "units", lambda self, *a, **kw: detected.append(1) or units(self, *a, **kw))
    runs, detections = {}, {}
    for refit in (False, True):
        detected.clear()
        training.train(corpus.utterances, tmp_path / f"run{refit}", tiny_config(epochs=3, refit_epochs=refit))
        runs[refit] = json.loads((tmp_path / f"run{refit}" / "bundle" / "config.json").read_text())
        detections[refit] = len(detected)
    assert detections[True] == detections[False] > 0
    parts = [u.split for u in read_manifest(tmp_path / "runTrue" / "split.csv")]
    n_train, n_val = parts.count("train"), parts.count("val")
    plain, refitted = runs[False]["training"], runs[True]["training"]
    epochs = refitted["best_epoch"] + 1
    assert fits == [(3, n_train), (3, n_train), (epochs, n_train + n_val)]
    assert refitted["refit"]["epochs"] == epochs and refitted["refit"]["clips"] == n_train + n_val
    assert "refit" not in plain
    # the first run is the run without the refit: same epoch, validation figures and temperature
    assert refitted["best_epoch"] == plain["best_epoch"] and refitted["validation"] == plain["validation"]
    assert runs[True]["temperature"] == pytest.approx(runs[False]["temperature"])
    first = load_file(str(tmp_path / "runTrue" / "checkpoints" / "best.safetensors"))
    served = load_file(str(tmp_path / "runTrue" / "bundle" / "model.safetensors"))
    before = load_file(str(tmp_path / "runFalse" / "bundle" / "model.safetensors"))
    assert first.keys() == before.keys() and all(np.array_equal(before[k], v) for k, v in first.items())
    assert any(not np.array_equal(before[k], served[k]) for k in before)     # the refitted weights are served
    card = " ".join(model_card(tmp_path / "runTrue" / "bundle").split())
    assert f"then trained again for {epochs} epochs on training + validation clips" in card
    assert "chose the epoch and the temperature, then joined the training" in card


def test_refit_epochs_is_refused_for_a_frozen_encoder_head(tmp_path):
    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=1)
    with pytest.raises(ValueError, match="refit-epochs is for models that learn from waveforms"):
        training.train(corpus.utterances, tmp_path / "run", tiny_config(model="encoder_head", refit_epochs=True,
                                                                       model_options={}))
    assert not (tmp_path / "run").exists()


def test_a_random_splits_card_does_not_call_its_test_speakers_held_out(tmp_path):
    import shutil

    from serkit.inference import resolve_model
    from serkit.model_card import model_card

    bundle = shutil.copytree(resolve_model("fast"), tmp_path / "b")
    config = json.loads((bundle / "config.json").read_text())
    config["training"]["config"]["split"] = "random"
    (bundle / "config.json").write_text(json.dumps(config))
    card = " ".join(model_card(bundle).split())
    assert "clips, speakers also in training" in card and "held-out speakers" not in card


@pytest.mark.parametrize("name", ["default", "fast"])
def test_the_shipped_models_figures_leave_out_clips_whose_words_give_the_emotion_away(name):
    """What the card and the page quote for a shipped model is judged as every report judges:
    its test clips less ASED's emotion-specific sentences, which the card says it left out."""
    from serkit.inference import resolve_model
    from serkit.model_card import model_card

    config = json.loads((resolve_model(name) / "config.json").read_text(encoding="utf-8"))
    test, clips = config["metrics"]["test"], config["training"]["data"]["parts"]["test"]["clips"]
    left_out = test["left_out"]["words_give_label"]
    assert left_out > 0 and test["n"] + left_out == clips
    assert sum(m["n"] for m in test["per_corpus"].values()) == test["n"]    # the breakdown judges the same clips
    assert test["per_corpus"]["ased"]["n"] < left_out                       # most ASED test clips are such texts
    assert f"({test['n']} clips, held-out speakers; {left_out} more left out: their words give the emotion away)" \
        in " ".join(model_card(name).split())


def test_evaluate_logits_without_known_emotions_is_an_error(tmp_path):
    utts = [Utterance(corpus="c", speaker="s", emotion="neutral", path=tmp_path / "x.wav")]
    with pytest.raises(ValueError, match="no clip has an emotion the model knows"):
        evaluate_logits(utts, np.zeros((1, 3)), list(EMOTIONS))


# ---------------------------------------------------------------------------- the run folder

def test_run_folder_contents(tmp_path_factory):
    corpus, run, report = trained_run(tmp_path_factory)
    for name in ("config.json", "split.csv", "metrics.csv", "curves.png", "bundle/model.safetensors",
                 "bundle/config.json", "eval/report.json", "eval/report.md", "eval/reliability.png",
                 "checkpoints/best.safetensors"):
        assert (run / name).is_file(), name
    assert not (run / "logs").exists()          # Lightning's log folder, emptied into metrics.csv

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 5 and cfg["emotions"] == list(EMOTIONS)
    assert cfg["model_options"] == {"channels": [4, 8, 8], "lstm_hidden": 16}

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_uar", "val_accuracy"} <= set(rows[0])

    saved = json.loads((run / "eval" / "report.json").read_text())
    assert saved["accuracy"] == pytest.approx(report["accuracy"]) and saved["split"] == "test"

    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["labels"] == list(EMOTIONS)
    assert bundle["metrics"]["test"]["accuracy"] == pytest.approx(report["accuracy"])
    assert bundle["temperature"] == pytest.approx(saved["calibration"]["temperature"])
    assert bundle["training"]["epochs_run"] == 5
    assert 0 <= bundle["training"]["best_epoch"] < 5
    assert "synth: see the data's own licence" in bundle["licence"]


def test_split_keeps_test_speakers_out_of_training(tmp_path_factory):
    corpus, run, report = trained_run(tmp_path_factory)
    split = read_manifest(run / "split.csv")
    assert len(split) == len(corpus.utterances)
    assert {u.split for u in split} == {"train", "val", "test"}
    speakers = {p: {u.group for u in split if u.split == p} for p in ("train", "val", "test")}
    assert not speakers["test"] & (speakers["train"] | speakers["val"])
    assert not speakers["val"] & speakers["train"]

    data = json.loads((run / "bundle" / "config.json").read_text())["training"]["data"]
    assert data["test_speakers"] == sorted(speakers["test"])
    assert data["val_speakers"] == sorted(speakers["val"])
    assert report["n"] == sum(u.split == "test" for u in split)
    assert set(report["per_speaker"]) == speakers["test"]


def test_evaluate_bundle_rebuilds_the_training_split(tmp_path_factory, tmp_path, monkeypatch):
    import serkit.evaluate_cmd as ev
    from serkit.inference import load_model

    monkeypatch.setattr(serkit.audio, "CACHE_ROOT", tmp_path / "cache")
    corpus, run, report = trained_run(tmp_path_factory)
    predictor = load_model(run / "bundle")
    again = ev.evaluate_bundle(predictor, corpus.manifest, "test", tmp_path / "eval", progress=False)
    assert again["n"] == report["n"]
    assert again["accuracy"] == pytest.approx(report["accuracy"])
    assert again["confusion_matrix"] == report["confusion_matrix"]
    assert (tmp_path / "eval" / "report.json").is_file()

    assert again["model"] == "run" and again["manifest"] == str(corpus.manifest) and again["notes"] == []
    # the parts are the speakers the model recorded: another manifest holding them is scored,
    # saying so; one holding only some of them is scored on those; one holding none is refused
    other = write_tone_corpus(tmp_path / "other", speakers=7, per_emotion=2, seed=5)
    scored = ev.evaluate_bundle(predictor, other.manifest, "test", progress=False)
    assert any("another manifest" in n for n in scored["notes"]), scored["notes"]
    test_speakers = json.loads((run / "bundle" / "config.json").read_text())["training"]["data"]["test_speakers"]
    some = tmp_path / "some.csv"
    write_manifest([u for u in corpus.utterances if u.group in test_speakers][::2], some)
    half = ev.evaluate_bundle(predictor, some, "test", progress=False)
    assert half["n"] == report["n"] // 2 and "another manifest" in half["notes"][0]
    with pytest.raises(ValueError, match="--card writes the model's own test figures"):    # nor onto a card
        ev.evaluate_bundle(predictor, some, "test", progress=False, card=run / "bundle")
    # a manifest holding some of the held-out speakers is scored on those (a split with two)
    two = SimpleNamespace(config={"training": {"config": {"split": "speaker"},
                                               "data": {"test_speakers": ["c/a", "c/b"], "val_speakers": ["c/v"]}}})
    clips = [Utterance(corpus="c", speaker=s, emotion="sad", path=Path(f"{s}.wav")) for s in ("a", "v", "t")]
    chosen, notes = ev.select_part(two, clips, "test", "m.csv")
    assert [u.speaker for u in chosen] == ["a"] and notes == ["1 of the model's 2 test speakers are in m.csv: "
                                                             "the figures are theirs alone"]
    assert [u.speaker for u in ev.select_part(two, clips, "train", "m.csv")[0]] == ["t"]
    # speakers of a corpus the model never trained on are not "trained on" (its corpora recorded)
    two.config["training"]["data"]["corpora"] = ["c"]
    strangers = [Utterance(corpus="cremad", speaker="1001", emotion="sad", path=Path("x.wav"))]
    assert ev.select_part(two, strangers, "all", "m.csv") == (strangers, [])
    assert ev.select_part(two, strangers + clips, "all", "m.csv")[1] == [
        "1 of these 4 clips are of speakers the model was trained on: these figures flatter it"]
    # a random split is rebuilt as training built it: with --split-seed when the run had one
    rnd = SimpleNamespace(config={"training": {"config": {"split": "random", "seed": 1, "split_seed": 0}}})
    utts = read_manifest(corpus.manifest)
    cfg0 = training.TrainConfig(split="random", seed=0)
    want = [u.path for u, p in zip(utts, training.split_for(utts, cfg0)) if p == "test"]   # as training splits
    chosen, notes = ev.select_part(rnd, utts, "test", "m.csv")
    assert [u.path for u in chosen] == want and "random split" in notes[0]
    none = tmp_path / "none.csv"
    write_manifest([u for u in corpus.utterances if u.group not in test_speakers], none)
    with pytest.raises(ValueError, match="none of the model's .* test speakers is in it"):
        ev.evaluate_bundle(predictor, none, "test", progress=False)
    everything = ev.evaluate_bundle(predictor, other.manifest, "all", progress=False)
    assert everything["n"] == len(other.utterances)
    assert any("of speakers the model was trained on" in n and "flatter" in n for n in everything["notes"])


def test_evaluate_card_records_what_the_bundle_as_it_is_scores(tmp_path_factory, tmp_path, capsys, monkeypatch):
    """serkit evaluate --card writes the test figures of the bundle as scored now into its card
    (here a copy whose temperature changed, as an export or a scorer change would change its
    answers), leaving the rest of its config.json as it was; refused for other parts."""
    import shutil

    monkeypatch.setattr(serkit.audio, "CACHE_ROOT", tmp_path / "cache")
    corpus, run, report = trained_run(tmp_path_factory)
    bundle = shutil.copytree(run / "bundle", tmp_path / "bundle")
    config = json.loads((bundle / "config.json").read_text())
    config["temperature"] = 0.05                      # sharper answers: other ECE
    (bundle / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(bundle), str(corpus.manifest), "--card", "--out", str(tmp_path / "e")]) == 0
    assert "card: these test figures are now" in capsys.readouterr().out
    after = json.loads((bundle / "config.json").read_text())
    scored = json.loads((tmp_path / "e" / "report.json").read_text())
    assert after["metrics"]["test"]["ece"] == pytest.approx(scored["calibration"]["ece_after"])
    assert after["metrics"]["test"]["ece"] != pytest.approx(config["metrics"]["test"]["ece"])
    assert {k: v for k, v in after.items() if k != "metrics"} == {k: v for k, v in config.items() if k != "metrics"}
    before = (bundle / "config.json").read_bytes()
    assert main(["evaluate", str(bundle), str(corpus.manifest), "--card", "--split", "val"]) == 2
    assert "--split test" in capsys.readouterr().err and (bundle / "config.json").read_bytes() == before


def test_too_few_emotions_or_missing_emotion_is_refused(tmp_path):
    corpus = write_tone_corpus(tmp_path / "c", speakers=3, per_emotion=1, emotions=("sad",))
    with pytest.raises(ValueError, match="at least two emotions"):
        training.train(corpus.manifest, tmp_path / "run", tiny_config())
    with pytest.raises(ValueError, match="angry have no clips"):
        training.train(corpus.manifest, tmp_path / "run", tiny_config(emotions=["angry", "sad"]))


# ------------------------------------------------------------------------------------- resume

class Crash(RuntimeError):
    pass


def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    corpus = write_tone_corpus(tmp_path / "c", speakers=7, per_emotion=3, seed=3)
    run = tmp_path / "run"

    class CrashAtEpoch2(training.BestWeights):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                raise Crash("power cut")

    with monkeypatch.context() as m:
        m.setattr(training, "BestWeights", CrashAtEpoch2)
        with pytest.raises(Crash):
            training.train(corpus.manifest, run, tiny_config(epochs=4))
    assert not (run / "bundle").exists()
    assert (run / "checkpoints" / "last.ckpt").is_file(), "no checkpoint to resume from"
    first = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    assert sorted({int(r["epoch"]) for r in first}) == [0, 1]

    # the resumed run starts at epoch 2 (it does not train epochs 0 and 1 again)
    started = []

    class Watch(training.BestWeights):
        def on_train_epoch_start(self, trainer, pl_module):
            started.append(trainer.current_epoch)

    monkeypatch.setattr(training, "BestWeights", Watch)
    with pytest.raises(ValueError, match=r"given: epochs 9 \(the run: 4\)"):    # a config that is not the run's
        training.train(corpus.manifest, run, tiny_config(epochs=9), resume=True)
    report = training.train(corpus.manifest, run, tiny_config(epochs=4, progress=True), resume=True)  # its own
    assert started == [2, 3]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1, 2, 3]       # the history is kept
    # the first two epochs' rows are the interrupted run's, unchanged
    assert [r for r in rows if int(r["epoch"]) < 2] == first
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["training"]["epochs_run"] == 4
    assert bundle["training"]["config"]["epochs"] == 4
    assert (run / "curves.png").is_file() and report["n"] > 0


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        training.train(tmp_path / "manifest.csv", tmp_path / "run", resume=True)


def test_ctrl_c_then_resume_on_the_command_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle of training (Lightning catches it and exits 1) ends serkit train with
    130 and how to go on; --resume goes on only with the run's own clips, split and settings."""
    corpus = write_tone_corpus(tmp_path / "c", speakers=7, per_emotion=3, seed=3)
    run = tmp_path / "run"
    options = ["--model-options", json.dumps({"channels": [4, 8, 8], "lstm_hidden": 16}), "--batch-size", "16",
               "--vad", "energy", "--clip-seconds", "0.5", "--no-rooms", "--no-progress"]

    class CtrlCAtEpoch1(training.BestWeights):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(training, "BestWeights", CtrlCAtEpoch1)
        assert main(["train", str(corpus.manifest), "--out", str(run), "--epochs", "3", *options]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"--out {run} --resume" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # Ctrl-C works again
    other = write_tone_corpus(tmp_path / "other", speakers=7, per_emotion=2, seed=4)
    before = sorted(p.name for p in run.rglob("*"))
    refusals = [([str(other.manifest), "--out", str(run), "--resume"], "not the clips and split"),
                ([str(corpus.manifest), "--out", str(run), "--resume", "--epochs", "5"], "epochs 5 (the run: 3)"),
                ([str(corpus.manifest), "--out", str(run), "--resume", "--force"], "give one of them")]
    for args, words in refusals:
        assert main(["train", *args]) == 2
        assert words in capsys.readouterr().err
        assert sorted(p.name for p in run.rglob("*")) == before
    assert main(["train", str(corpus.manifest), "--out", str(run), "--resume", *options]) == 0
    assert json.loads((run / "bundle" / "config.json").read_text())["training"]["epochs_run"] == 3
    capsys.readouterr()
    assert main(["evaluate", str(run / "bundle"), str(corpus.manifest), "--model", "fast"]) == 2
    assert "the model once" in capsys.readouterr().err
    report = (run / "eval" / "report.json").read_bytes()        # a run's report is its own model's
    assert main(["evaluate", "fast", str(corpus.manifest), "--split", "all", "--out", str(run / "eval")]) == 2
    assert "holds the report of the run" in capsys.readouterr().err and (run / "eval" / "report.json").read_bytes() == report


# ---------------------------------------------------------------------------------- CLI flow

def test_cli_prepare_train_evaluate_predict_info(tmp_path, capsys, monkeypatch):
    # keep every decoded-audio cache inside tmp_path (the CLI has no option for it)
    cache = tmp_path / "cache"
    real_decode = training.decode_all
    monkeypatch.setattr(training, "decode_all",
                        lambda utts, sr, cache_dir, progress=True: real_decode(utts, sr, cache, progress=False))
    monkeypatch.setattr(serkit.audio, "CACHE_ROOT", cache)

    tree = tmp_path / "ravdess"
    clips = write_ravdess_tree(tree, actors=6, seconds=0.5)
    manifest = tmp_path / "manifest.csv"

    assert main(["prepare", str(tree), "-o", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "ravdess" in out and f"wrote {len(clips)} clips" in out
    utts = read_manifest(manifest)
    assert len(utts) == len(clips) and {u.corpus for u in utts} == {"ravdess"}
    assert len({u.speaker for u in utts}) == 6 and {u.emotion for u in utts} == set(EMOTIONS)

    run = tmp_path / "run"
    options = json.dumps({"channels": [4, 8, 8], "lstm_hidden": 16})
    said = []                                   # what Lightning logs (its own handler prints it)
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("lightning.pytorch").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            assert main(["train", str(manifest), "--out", str(run), "--epochs", "2", "--batch-size", "16",
                         "--lr", "0.01", "--model-options", options, "--vad", "energy"]) == 0   # tones: not speech to silero
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(handler)
    assert any(m.startswith("GPU available") for m in said)        # what is about the run stays
    assert not any(m.startswith(callbacks.NOT_ABOUT_THE_RUN) for m in said)
    assert not any("LeafSpec" in str(w.message) or "logging interval" in str(w.message) for w in warned)
    out = capsys.readouterr().out
    assert "test: accuracy" in out and "UAR" in out and str(run / "bundle") in out
    assert "  ravdess: accuracy" in out  # per corpus, as evaluate prints it
    bundle = run / "bundle"
    config = json.loads((bundle / "config.json").read_text())
    assert config["labels"] == list(EMOTIONS)
    assert config["model_config"]["channels"] == [4, 8, 8]
    assert config["training"]["config"]["epochs"] == 2

    eval_dir = tmp_path / "eval"
    assert main(["evaluate", str(bundle), str(manifest), "--out", str(eval_dir)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro-F1" in out and "UAR" in out and "ECE" in out
    report = json.loads((eval_dir / "report.json").read_text())
    trained = json.loads((run / "eval" / "report.json").read_text())
    assert report["n"] == trained["n"] and report["accuracy"] == pytest.approx(trained["accuracy"])
    assert f"accuracy {report['accuracy']:.3f}" in out
    flags = report["calibration"]["uncertain_after"]
    assert f"Flagged uncertain (as served, temperature {report['calibration']['temperature']:.2f}): " \
           f"{100 * flags['share']:.1f} % of the answers" in " ".join(out.split())

    assert main(["predict", "--model", str(bundle), "--format", "json", str(tree)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(clips)
    assert all(r["emotion"] in EMOTIONS and r["error"] is None for r in rows), [r for r in rows if r["emotion"] not in EMOTIONS][:2]

    assert main(["info", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "labels         angry, happy, sad" in out
    assert "cnn_lstm" in out and "test metrics" in out
    assert f"accuracy {config['metrics']['test']['accuracy']:.3f}" in out
    assert "RAVDESS: CC BY-NC-SA 4.0" in out

"""Runs of one split joined into one model (serkit ensemble), and --split-seed that makes them."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from serkit.bundle import load_bundle
from serkit.errors import BundleError
from serkit.safety import OutputError
from serkit.training import train
from tests.synth import tiny_config, write_tone_corpus


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny CNN-LSTM runs: seeds 0 and 1 on split 0, and seed 1 on its own split."""
    root = tmp_path_factory.mktemp("ensemble")
    corpus = write_tone_corpus(root / "corpus", speakers=8, per_emotion=3, seed=5)
    out = {}
    for name, options in {"s0": {"seed": 0, "split_seed": 0}, "s1": {"seed": 1, "split_seed": 0},
                          "own": {"seed": 1}}.items():
        out[name] = root / name
        train(corpus.manifest, out[name], tiny_config(epochs=2, **options))
    out["root"], out["manifest"] = root, corpus.manifest
    return out


def clips(run):
    """(file, part) of every clip of a run's split.csv."""
    from serkit.manifest import read_manifest

    return [(str(u.path.resolve()), u.split) for u in read_manifest(run / "split.csv")]


def test_split_seed_keeps_the_split_while_the_seed_changes_the_model(runs):
    assert clips(runs["s0"]) == clips(runs["s1"])
    assert clips(runs["own"]) != clips(runs["s0"])          # --seed 1 alone splits by seed 1
    w0 = load_bundle(runs["s0"] / "bundle")[0].state_dict()
    w1 = load_bundle(runs["s1"] / "bundle")[0].state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


@pytest.fixture(scope="module")
def ensemble(runs):
    from serkit.ensembles import ensemble_runs

    out = runs["root"] / "ens"
    report = ensemble_runs([runs["s0"], runs["s1"]], out, progress=False)
    return out, report


def test_an_ensemble_answers_with_the_mean_of_its_members_calibrated_probabilities(runs, ensemble):
    out, report = ensemble
    model, config = load_bundle(out / "bundle")
    assert config["model_type"] == "ensemble" and [m["seed"] for m in config["model_config"]["members"]] == [0, 1]
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(3, 8000, generator=g)
    lengths = torch.tensor([8000, 6000, 3000])
    probs = []
    for name in ("s0", "s1"):
        member, member_config = load_bundle(runs[name] / "bundle")
        with torch.inference_mode():
            probs.append(torch.softmax(member(wave, lengths) / member_config["temperature"], -1))
    with torch.inference_mode():
        got = model(wave, lengths)
    assert torch.allclose(got.exp(), (probs[0] + probs[1]) / 2, atol=1e-6)
    assert model.shared_frontend       # one log-mel for both: the same answers as each hearing its own
    model.shared_frontend = False
    with torch.inference_mode():
        assert torch.allclose(model(wave, lengths), got, atol=1e-6)
    # scored and calibrated as a run: on the members' test speakers, its own temperature
    assert report["n"] == sum(part == "test" for _, part in clips(runs["s0"]))
    assert config["metrics"]["test"]["uar"] == pytest.approx(report["uar"])
    assert config["temperature"] > 0 and (out / "eval" / "report.md").is_file()
    assert clips(out) == clips(runs["s0"])


def test_the_ensemble_serves_exports_and_describes_itself(runs, ensemble, tmp_path):
    from serkit.export import export_onnx
    from serkit.inference import load_model
    from serkit.model_card import model_card

    out, _ = ensemble
    card = " ".join(model_card(out / "bundle").split())
    assert "2 cnn_lstm models trained on this split, seeds 0, 1" in card and "2 x cnn_lstm" in card
    wav = sorted((runs["root"] / "corpus" / "wav").rglob("*.wav"))[0]
    torch_answer = load_model(out / "bundle").predict_file(wav)
    result = export_onnx(out / "bundle", tmp_path / "onnx", int8=True)
    assert result.parity["fp32"]["max_abs_prob_diff"] < 1e-4
    onnx_answer = load_model(tmp_path / "onnx").predict_file(wav)
    assert torch_answer.emotion is not None and onnx_answer.emotion == torch_answer.emotion
    assert onnx_answer.probabilities == pytest.approx(torch_answer.probabilities, abs=1e-4)


def test_runs_that_cannot_answer_together_are_refused(runs, tmp_path):
    from serkit.ensembles import EnsembleError, ensemble_runs

    with pytest.raises(EnsembleError, match="split"):
        ensemble_runs([runs["s0"], runs["own"]], tmp_path / "a")
    with pytest.raises(EnsembleError, match="twice"):
        ensemble_runs([runs["s0"], runs["s0"]], tmp_path / "b")
    with pytest.raises(EnsembleError, match="2 to 8"):
        ensemble_runs([runs["s0"]], tmp_path / "c")
    with pytest.raises(EnsembleError, match="not a finished serkit run"):
        ensemble_runs([runs["s0"], tmp_path], tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")     # refused before writing anything
    before = (runs["s0"] / "bundle" / "model.safetensors").read_bytes()
    with pytest.raises(OutputError, match="holds the input"):   # a member's own folder, even with force
        ensemble_runs([runs["s0"], runs["s1"]], runs["s0"], force=True)
    assert (runs["s0"] / "bundle" / "model.safetensors").read_bytes() == before


def test_refitted_members_serve_but_their_first_runs_fit_the_ensembles_temperature(runs, ensemble, tmp_path,
                                                                                  monkeypatch):
    """Members trained with --refit-epochs heard the validation speakers: the ensemble's temperature
    and validation figures come from their first runs (their best.safetensors), which are the plain
    runs of the same seeds (s0, s1), so they equal the plain ensemble's, while the refits serve."""
    import serkit.ensembles
    from safetensors.torch import load_file

    from serkit.ensembles import EnsembleError, ensemble_runs
    from serkit.model_card import model_card

    refitted = {}
    for seed in (0, 1):
        refitted[seed] = tmp_path / f"r{seed}"
        train(runs["manifest"], refitted[seed], tiny_config(epochs=2, seed=seed, split_seed=0, refit_epochs=True))
    scored = {}
    real_finish = serkit.ensembles.finish

    def finish(model, *args, **kwargs):   # what scores the validation clips, and what serves
        scored["validation"], scored["served"] = kwargs.get("calibration_state"), model.state_dict()
        return real_finish(model, *args, **kwargs)

    monkeypatch.setattr(serkit.ensembles, "finish", finish)
    ensemble_runs([refitted[0], refitted[1]], tmp_path / "ens", progress=False)
    first = {f"members.{i}.{k}": v for i in (0, 1)
             for k, v in load_file(refitted[i] / "checkpoints" / "best.safetensors").items()}
    assert scored["validation"] is not None and scored["validation"].keys() == scored["served"].keys() == first.keys()
    assert all(torch.equal(scored["validation"][k], v) for k, v in first.items())
    assert any(not torch.equal(scored["served"][k], v) for k, v in first.items())
    plain_model, plain = load_bundle(ensemble[0] / "bundle")
    model, config = load_bundle(tmp_path / "ens" / "bundle")
    assert config["temperature"] == pytest.approx(plain["temperature"])
    assert config["training"]["validation"] == plain["training"]["validation"]
    plain_state = plain_model.state_dict()
    assert any(not torch.equal(v, plain_state[k]) for k, v in model.state_dict().items())   # the refits serve
    epochs = [json.loads((refitted[s] / "bundle" / "config.json").read_text())["training"]["refit"]["epochs"]
              for s in (0, 1)]
    assert config["training"]["refit"]["members"] == epochs
    card = " ".join(model_card(tmp_path / "ens" / "bundle").split())
    assert f"then trained again on training + validation clips for {epochs[0]}, {epochs[1]} epochs" in card
    assert "chose the epoch and the temperature, then joined the training" in card
    # without a member's first-run weights there is nothing honest to fit the temperature on
    shutil.copytree(refitted[1], tmp_path / "lost")
    (tmp_path / "lost" / "checkpoints" / "best.safetensors").unlink()
    with pytest.raises(EnsembleError, match="first run's weights"):
        ensemble_runs([refitted[0], tmp_path / "lost"], tmp_path / "ens2", progress=False)
    # nor on weights of another shape (a load error after the folder is claimed would leave half a run)
    from safetensors.torch import save_file

    shutil.copytree(refitted[1], tmp_path / "bent")
    state = load_file(tmp_path / "bent" / "checkpoints" / "best.safetensors")
    state["head.bias"] = torch.zeros(len(state["head.bias"]) + 1)
    save_file(state, tmp_path / "bent" / "checkpoints" / "best.safetensors")
    with pytest.raises(EnsembleError, match="do not fit"):
        ensemble_runs([refitted[0], tmp_path / "bent"], tmp_path / "ens2", progress=False)
    assert not (tmp_path / "ens2").exists()


def test_the_cli_writes_an_ensemble_and_will_not_replace_one_unasked(runs, tmp_path, capsys):
    from serkit import cli

    out = tmp_path / "ens"
    assert cli.main(["ensemble", str(runs["s0"]), str(runs["s1"]), "--out", str(out)]) == 0
    assert "test: accuracy" in capsys.readouterr().out and (out / "bundle" / "model.safetensors").is_file()
    before = (out / "bundle" / "config.json").read_bytes()
    assert cli.main(["ensemble", str(runs["s0"]), str(runs["s1"]), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "--force" in err and "--resume" not in err          # ensemble has no --resume to suggest
    assert (out / "bundle" / "config.json").read_bytes() == before


@pytest.mark.parametrize("change, key", [
    (lambda mc: mc.update(members=mc["members"] * 5), "members"),
    (lambda mc: mc["members"][0].update(model_type="pretrained"), "members[0].model_type"),
    (lambda mc: mc["members"][1].update(temperature=0), "members[1].temperature"),
    (lambda mc: mc["members"][1].update(model_config=[1]), "members[1].model_config"),
    (lambda mc: mc["members"][0]["model_config"].update(lstm_hidden=16.5), "members[0].model_config.lstm_hidden"),
    (lambda mc: mc["members"][0]["model_config"].update(n_classes=99), "members[0].model_config.n_classes"),
])
def test_a_tampered_ensemble_config_is_refused_naming_the_key(ensemble, tmp_path, change, key):
    out, _ = ensemble
    bundle = tmp_path / "bundle"
    shutil.copytree(out / "bundle", bundle)
    config = json.loads((bundle / "config.json").read_text())
    change(config["model_config"])
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=f"model_config.{key}".replace("[", r"\[").replace("]", r"\]")):
        load_bundle(bundle)


def test_an_ensemble_averages_calibrated_members_not_raw_logits():
    """A confident member at a high temperature counts for less than its raw logits say."""
    from serkit.models.configs import EnsembleConfig
    from serkit.models.ensemble import Ensemble

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.tensor([logits])

        def forward(self, wave, lengths=None):
            return self.logits.expand(len(wave), -1)

    members = [{"model_type": "cnn_lstm", "model_config": {"n_classes": 2}, "temperature": t} for t in (1.0, 4.0)]
    model = Ensemble(EnsembleConfig(n_classes=2, members=members), [Fixed([0.0, 2.0]), Fixed([4.0, 0.0])])
    p = model(torch.zeros(1, 10)).exp()[0].numpy()
    a, b = np.exp([0.0, 2.0]) / np.exp([0.0, 2.0]).sum(), np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
    assert np.allclose(p, (a + b) / 2, atol=1e-6) and p.argmax() == 1     # raw logits would say class 0


def test_the_shipped_fast_model_is_an_ensemble_of_three_that_answers_without_torch():
    """serkit/fast_model (make fast-model): three refitted CNN-LSTMs of one split in one int8 graph."""
    from serkit.inference import load_model

    model = load_model("fast")
    members = model.config["model_config"]["members"]
    assert model.config["model_type"] == "ensemble" and model.runtime.name == "onnx"
    assert [m["seed"] for m in members] == [0, 1, 2] and {m["model_type"] for m in members} == {"cnn_lstm"}
    from serkit.model_card import model_card      # serkit info fast: the card of the model by its name
    card = " ".join(model_card("fast").split())
    assert "3 cnn_lstm models trained on this split, seeds 0, 1, 2, then trained again on training + validation" in card
    assert "chose the epoch and the temperature, then joined the training" in card    # --refit-epochs
    wave = 0.1 * np.random.default_rng(0).standard_normal(48000).astype(np.float32)
    p = model.predict_proba(wave)
    assert p.shape == (6,) and abs(p.sum() - 1) < 1e-5 and np.isfinite(model.logits([wave])).all()
    import subprocess
    import sys
    code = ("import sys, numpy as np, serkit; m = serkit.load_model('fast'); "
            "m.predict_proba(np.zeros(48000, np.float32) + 0.01); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

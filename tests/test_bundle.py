"""Bundles: a folder with model.safetensors and config.json, round-tripped exactly, never unpickled."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from serkit.bundle import FORMAT_VERSION, BundleError, load_bundle, read_config, save_bundle
from serkit.inference import Predictor, load_model
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from synth import EMOTIONS, SR, tone_clip

AUDIO = {"sample_rate": SR, "clip_seconds": 0.5}


def make_model(seed: int = 0, **kw) -> CNNLSTM:
    torch.manual_seed(seed)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16, **kw))
    # non-trivial BatchNorm statistics, so the round trip must carry the buffers too
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def clips(n_per_class: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # lengths below, at and above the 0.5 s window
    return [tone_clip(e, s, rng) for e in EMOTIONS for s in (0.3, 0.5, 1.3)[:n_per_class + 1]]


@pytest.fixture
def bundle(tmp_path):
    model = make_model()
    folder = save_bundle(tmp_path / "bundle", model, list(EMOTIONS), AUDIO, temperature=1.7,
                         training={"config": {"seed": 0}}, metrics={"test": {"accuracy": 0.5}})
    return folder, model


def test_round_trip_gives_identical_probabilities(bundle):
    folder, model = bundle
    waves = clips()
    before = Predictor(model, {"labels": list(EMOTIONS), "audio": AUDIO, "temperature": 1.7}).predict_proba(waves)
    loaded, config = load_bundle(folder)
    np.testing.assert_array_equal(Predictor(loaded, config).predict_proba(waves), before)
    # load_model also switches convolutions to channels_last: the same numbers up to rounding
    after = load_model(folder).predict_proba(waves)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    np.testing.assert_allclose(after.sum(1), 1.0, atol=1e-5)
    # and the weights themselves are bit-identical
    loaded, _ = load_bundle(folder)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_loaded_model_is_in_eval_mode_and_rebuilt_from_config(bundle):
    folder, _ = bundle
    model, config = load_bundle(folder)
    assert not model.training
    assert isinstance(model, CNNLSTM)
    assert model.config.channels == [4, 8, 8] and model.config.lstm_hidden == 16
    assert model.config.n_classes == 3


def test_config_json_contents(bundle):
    folder, model = bundle
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "serkit-bundle"
    assert config["format_version"] == FORMAT_VERSION
    assert config["model_type"] == "cnn_lstm"
    assert config["labels"] == list(EMOTIONS)
    assert config["audio"] == AUDIO
    assert config["temperature"] == pytest.approx(1.7)
    assert config["model_config"]["channels"] == [4, 8, 8]
    assert config["model_config"]["lstm_hidden"] == 16
    assert config["model_config"]["n_classes"] == 3
    assert config["training"] == {"config": {"seed": 0}}
    assert config["metrics"] == {"test": {"accuracy": 0.5}}
    assert load_model(folder).temperature == pytest.approx(1.7)


def test_temperature_scales_probabilities_not_predictions(tmp_path):
    model = make_model()
    waves = clips()
    p1 = load_model(save_bundle(tmp_path / "t1", model, list(EMOTIONS), AUDIO, 1.0)).predict_proba(waves)
    p3 = load_model(save_bundle(tmp_path / "t3", model, list(EMOTIONS), AUDIO, 3.0)).predict_proba(waves)
    np.testing.assert_array_equal(p1.argmax(1), p3.argmax(1))
    assert (p3.max(1) < p1.max(1) + 1e-7).all()                    # softer at a higher temperature
    assert (p3.max(1) < p1.max(1)).any()


def test_bundle_holds_only_weights_and_json_no_pickle(bundle):
    folder, _ = bundle
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    raw = (folder / "model.safetensors").read_bytes()
    assert not raw.startswith(b"\x80")                             # not a pickle stream
    assert not raw.startswith(b"PK")                               # not a torch.save zip
    header_len = int.from_bytes(raw[:8], "little")                 # safetensors: u64 + JSON header
    header = json.loads(raw[8:8 + header_len])
    assert header["__metadata__"]["format"] == "serkit-bundle"


def test_future_format_version_is_refused(bundle):
    folder, _ = bundle
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match=rf"format {FORMAT_VERSION + 1} is newer.*upgrade serkit") as exc:
        load_bundle(folder)
    assert str(folder) in str(exc.value)
    with pytest.raises(BundleError):
        load_model(folder)


def test_folder_without_config_is_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a serkit bundle.*config.json"):
        load_bundle(tmp_path / "empty")
    with pytest.raises(BundleError, match=r"nowhere: no such folder; give a bundle folder \(predict, .* a shipped model"):
        read_config(tmp_path / "nowhere")
    run = tmp_path / "run"                            # a training run's folder names its model
    (run / "bundle").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "bundle" / "config.json").write_text("{}")
    with pytest.raises(BundleError, match=f"a training run's folder; its model is {run / 'bundle'}"):
        load_model(run)


def test_other_json_is_not_a_bundle(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(BundleError, match="not a serkit bundle"):
        load_bundle(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="invalid JSON"):
        load_bundle(folder)


def test_missing_weights_raise_bundle_error(bundle):
    folder, _ = bundle
    (folder / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="missing model.safetensors"):
        load_bundle(folder)


def test_weights_that_do_not_fit_raise_bundle_error(bundle, tmp_path):
    folder, _ = bundle
    # weights of another architecture, same names: shapes differ
    other = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=24))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(folder / "model.safetensors"))
    with pytest.raises(BundleError, match="weights do not fit"):
        load_bundle(folder)


def test_weights_with_missing_or_extra_tensors_raise_bundle_error(bundle):
    folder, _ = bundle
    path = folder / "model.safetensors"
    state = load_file(str(path))
    dropped = dict(state)
    dropped.pop("head.weight")
    save_file(dropped, str(path))
    with pytest.raises(BundleError, match="weights do not fit.*head.weight"):
        load_bundle(folder)
    save_file({**state, "extra.weight": torch.zeros(2)}, str(path))
    with pytest.raises(BundleError, match="weights do not fit.*extra.weight"):
        load_bundle(folder)


def test_unknown_model_type_raises_bundle_error(bundle):
    folder, _ = bundle
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["model_type"] = "transformer_xl"
    path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match="unknown model type 'transformer_xl'"):
        load_bundle(folder)


def test_saving_over_a_bundle_replaces_it_atomically(tmp_path):
    waves = clips()
    first, second = make_model(seed=0), make_model(seed=1)
    folder = tmp_path / "bundle"
    save_bundle(folder, first, list(EMOTIONS), AUDIO, 1.0)
    save_bundle(folder, second, ["sad", "happy", "angry"], AUDIO, 2.0)

    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["bundle"]                        # no .bundle.* leftovers
    predictor = load_model(folder)
    assert predictor.labels == ["sad", "happy", "angry"]
    assert predictor.temperature == pytest.approx(2.0)
    expected = Predictor(second, {"labels": predictor.labels, "audio": AUDIO, "temperature": 2.0})
    np.testing.assert_allclose(predictor.predict_proba(waves), expected.predict_proba(waves), atol=1e-6)  # BatchNorm folded at load


def test_saving_over_a_bundle_keeps_files_serkit_did_not_write(tmp_path):
    folder = tmp_path / "bundle"
    save_bundle(folder, make_model(seed=0), list(EMOTIONS), AUDIO, 1.0)
    (folder / "notes.txt").write_text("the user's notes")
    save_bundle(folder, make_model(seed=1), ["sad", "happy", "angry"], AUDIO, 2.0)
    assert (folder / "notes.txt").read_text() == "the user's notes"
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["bundle"]
    assert load_model(folder).labels == ["sad", "happy", "angry"]


def test_failed_save_leaves_previous_bundle_and_no_temporary_folder(tmp_path, monkeypatch):
    import safetensors.torch

    folder = tmp_path / "bundle"
    save_bundle(folder, make_model(), list(EMOTIONS), AUDIO, 1.0)
    before = (folder / "model.safetensors").read_bytes()

    def half_written(state, path, metadata=None):                  # a crash mid-write
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)   # serkit.bundle imports it when saving
    with pytest.raises(OSError, match="disk full"):
        save_bundle(folder, make_model(seed=3), ["sad", "happy", "angry"], AUDIO, 1.0)
    assert sorted(os.listdir(tmp_path)) == ["bundle"]               # temporary folder removed
    assert (folder / "model.safetensors").read_bytes() == before    # old bundle untouched
    assert load_model(folder).labels == list(EMOTIONS)

"""ONNX export (fp32 and int8), the onnxruntime Predictor, and their CLI.

Parity bounds, on a synthetic test set of 36 tone clips of 0.2-2.0 s (one to seven windows):
- fp32: every class probability within 1e-4 (absolute) of PyTorch's (measured: ~1e-7);
- int8: the same top emotion as PyTorch on at least 90 % of the clips (measured: all of them),
  and every probability within 0.05.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from serkit.bundle import BundleError  # noqa: E402
from serkit.cli import main  # noqa: E402
from serkit.export import ExportError, export_onnx  # noqa: E402
from serkit.inference import Predictor, load_model  # noqa: E402
from serkit.onnx_runtime import OnnxPredictor, load_onnx_model  # noqa: E402
from synth import EMOTIONS, tone_clip, trained_run, write_clip, write_corrupt  # noqa: E402

FP32_TOL = 1e-4
INT8_TOP1 = 0.90
INT8_TOL = 0.05


def synthetic_set(n_per_emotion: int = 12, seed: int = 7) -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for emotion in EMOTIONS:
        for _ in range(n_per_emotion):
            waves.append(tone_clip(emotion, float(rng.uniform(0.2, 2.0)), rng))
            labels.append(emotion)
    return waves, labels


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The session's tiny trained model, exported with the fast exporter (fp32 + int8)."""
    corpus, run, _ = trained_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("onnx") / "export"
    result = export_onnx(run / "bundle", out, int8=True, exporter="torchscript")
    return run / "bundle", out, result


def test_fp32_matches_pytorch(exported):
    bundle, out, result = exported
    torch_pred, onnx_pred = load_model(bundle), load_onnx_model(out, precision="fp32")
    assert isinstance(onnx_pred, OnnxPredictor) and isinstance(onnx_pred, Predictor)
    waves, _ = synthetic_set()
    p, q = torch_pred.predict_proba(waves), onnx_pred.predict_proba(waves)
    assert np.abs(p - q).max() < FP32_TOL
    assert result.parity["fp32"]["max_abs_prob_diff"] < FP32_TOL      # the export's own check agrees


def test_int8_keeps_the_top_emotion(exported):
    bundle, out, result = exported
    torch_pred, int8_pred = load_model(bundle), load_onnx_model(out, precision="int8")
    waves, labels = synthetic_set()
    p, q = torch_pred.predict_proba(waves), int8_pred.predict_proba(waves)
    agreement = float((p.argmax(1) == q.argmax(1)).mean())
    assert agreement >= INT8_TOP1, agreement
    assert np.abs(p - q).max() < INT8_TOL
    # and the model is still right: the tiny model separates the tones
    accuracy = float(np.mean([int8_pred.labels[i] == y for i, y in zip(q.argmax(1), labels)]))
    assert accuracy >= 0.8
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size


def test_dynamic_batch_and_length_axes(exported):
    bundle, out, _ = exported
    torch_pred, onnx_pred = load_model(bundle), load_onnx_model(out, precision="fp32")
    rng = np.random.default_rng(3)
    for batch, samples in [(1, 8000), (5, 8000), (2, 3000), (3, 40000)]:
        windows = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
        lengths = np.array([samples - 500 * i for i in range(batch)], np.int64)
        np.testing.assert_allclose(onnx_pred.logits_windows(windows, lengths),
                                   torch_pred.logits_windows(windows, lengths), atol=1e-4)


def test_export_folder_and_loading(exported):
    bundle, out, _ = exported
    config = json.loads((out / "config.json").read_text())
    source = json.loads((bundle / "config.json").read_text())
    assert config["labels"] == source["labels"] and config["temperature"] == source["temperature"]
    assert config["onnx"]["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert config["onnx"]["default"] == "int8"
    assert not (out / "model.safetensors").exists()
    # load_model sees an export by itself, and a named .onnx file picks that precision
    auto = load_model(out)
    assert isinstance(auto, OnnxPredictor) and auto.model_path.name == "model.int8.onnx"
    assert load_model(out / "model.onnx").model_path.name == "model.onnx"
    assert load_model(bundle, runtime="torch").__class__ is Predictor
    with pytest.raises(BundleError, match="not an ONNX export"):
        load_onnx_model(bundle)
    with pytest.raises(BundleError, match="no int8 model"):
        fp32_only = out.parent / "fp32_only"
        shutil.copytree(out, fp32_only)
        cfg = json.loads((fp32_only / "config.json").read_text())
        cfg["onnx"]["files"].pop("int8")
        (fp32_only / "config.json").write_text(json.dumps(cfg))
        load_onnx_model(fp32_only, precision="int8")


def test_predict_files_with_onnx_records_errors(exported, tmp_path):
    _, out, _ = exported
    good = write_clip(tmp_path / "a.wav", tone_clip("sad", 0.7, np.random.default_rng(0)))
    bad = write_corrupt(tmp_path / "b.wav")
    results = load_model(out).predict_files([good, bad])
    assert results[0].emotion == "sad" and results[0].error is None
    assert results[1].emotion is None and "cannot decode" in results[1].error


def test_cli_export_then_predict(exported, tmp_path, capsys):
    bundle, _, _ = exported
    files = [write_clip(tmp_path / f"{e}.wav", tone_clip(e, 0.9, np.random.default_rng(i)))
             for i, e in enumerate(EMOTIONS)]
    out = tmp_path / "cli_export"
    assert main(["export", str(bundle), "--onnx", "--int8", "-o", str(out), "--exporter", "torchscript"]) == 0
    text = capsys.readouterr().out
    assert "model.onnx" in text and "model.int8.onnx" in text and "top-1 agreement" in text

    assert main(["predict", "--model", str(bundle), "-f", "json", *map(str, files)]) == 0
    torch_rows = json.loads(capsys.readouterr().out)
    assert main(["predict", "--model", str(out / "model.onnx"), "--runtime", "onnx", "-f", "json",
                 *map(str, files)]) == 0
    onnx_rows = json.loads(capsys.readouterr().out)
    assert [r["emotion"] for r in onnx_rows] == [r["emotion"] for r in torch_rows] == list(EMOTIONS)
    for a, b in zip(torch_rows, onnx_rows):
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in EMOTIONS) < FP32_TOL


def test_int8_only_export_keeps_the_int8_model_alone(exported, tmp_path, capsys):
    """--int8-only (how the shipped fast model is exported): the fp32 graph is checked, then not
    kept, so a retrained model adds one ONNX file to the history; re-exporting over a full export
    removes that export's fp32 file; the folder serves int8 and says it has no fp32 model."""
    bundle, full, result = exported
    out = tmp_path / "int8_only"
    shutil.copytree(full, out)                      # an earlier full export in the same folder
    assert main(["export", str(bundle), "--onnx", "--int8-only", "-o", str(out), "--exporter", "torchscript"]) == 0
    assert "model.int8.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["config.json", "model.int8.onnx"]
    info = json.loads((out / "config.json").read_text())["onnx"]
    assert info["files"] == {"int8": "model.int8.onnx"} and info["default"] == "int8"
    assert info["parity"]["fp32"]["max_abs_prob_diff"] < FP32_TOL      # checked before it was left out
    waves, _ = synthetic_set(n_per_emotion=2)
    np.testing.assert_allclose(load_model(out).predict_proba(waves),
                               load_onnx_model(full, precision="int8").predict_proba(waves), atol=1e-6)
    with pytest.raises(BundleError, match="no fp32 model"):
        load_onnx_model(out, precision="fp32")


def test_cli_errors_are_one_line(exported, tmp_path, capsys):
    bundle, _, _ = exported
    assert main(["predict", "--model", str(bundle), "--runtime", "onnx", str(tmp_path / "x.wav")]) == 2
    assert "not an ONNX export" in capsys.readouterr().err
    assert main(["export", str(bundle), "-o", str(tmp_path / "e")]) == 2
    assert "--onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--onnx", "-o", str(tmp_path / "e")]) == 2
    assert "nothing: no such folder" in capsys.readouterr().err
    from serkit.inference import shipped_model_path     # an encoder head is ONNX already: said in one line
    assert main(["export", str(shipped_model_path("default")), "--onnx", "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs on onnxruntime already" in err and not (tmp_path / "e").exists()


def test_a_failed_parity_check_leaves_nothing_behind(exported, tmp_path):
    bundle, _, _ = exported
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_onnx(bundle, tmp_path / "strict", exporter="torchscript", tolerance=-1.0)
    assert not (tmp_path / "strict").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.slow
def test_default_dynamo_exporter_matches_pytorch(exported, tmp_path):
    """The default exporter (torch.export based, ~30 s on two cores)."""
    bundle, _, _ = exported
    result = export_onnx(bundle, tmp_path / "dynamo")
    assert result.info["exporter"] == "dynamo" and result.files == {"fp32": "model.onnx"}
    waves, _ = synthetic_set(n_per_emotion=4)
    p = load_model(bundle).predict_proba(waves)
    q = load_model(tmp_path / "dynamo").predict_proba(waves)
    assert np.abs(p - q).max() < FP32_TOL


@pytest.mark.slow
@pytest.mark.parametrize("family", ["whisper", "wav2vec2", "hubert", "wavlm"])
def test_pretrained_bundles_export_with_dynamo(tmp_path, family, monkeypatch):
    """Tiny random encoders of every family (Whisper: fixed window; wav2vec2 and WavLM: masked
    GroupNorm; HuBERT: per-frame LayerNorm) export with the default exporter, front-end included,
    and the onnxruntime Predictor matches PyTorch on clips of one to seven windows."""
    pretrained = pytest.importorskip("serkit.models.pretrained")
    monkeypatch.setenv("SERKIT_BACKBONE_DIRS", str(tmp_path))   # the bundle's backbone lies here
    import torch

    from serkit.bundle import save_bundle
    from synth import SR, make_backbone

    model = pretrained.PretrainedSER(pretrained.PretrainedConfig(
        n_classes=3, backbone=str(make_backbone(tmp_path, family)), clip_seconds=0.5)).eval()
    torch.manual_seed(0)
    for p in model.head.parameters():   # a random head, so that differences show in the probabilities
        torch.nn.init.normal_(p, std=0.2)
    bundle = save_bundle(tmp_path / "bundle", model, list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 0.5})
    if family == "whisper":   # the legacy exporter stops at a shape used as an argument (layer_norm)
        with pytest.raises(ExportError, match="--exporter dynamo"):
            export_onnx(bundle, tmp_path / "legacy", exporter="torchscript")
    result = export_onnx(bundle, tmp_path / "onnx", int8=True)
    assert result.parity["fp32"]["max_abs_prob_diff"] < FP32_TOL
    waves, _ = synthetic_set(n_per_emotion=3)
    p = load_model(bundle).predict_proba(waves)
    assert p.std(axis=0).max() > 0.01                                  # the control: outputs vary by clip
    assert np.abs(p - load_model(tmp_path / "onnx" / "model.onnx").predict_proba(waves)).max() < FP32_TOL
    assert np.abs(p - load_model(tmp_path / "onnx").predict_proba(waves)).max() < INT8_TOL
    assert result.info["default"] == "int8"


def test_the_card_of_an_exported_model_weighs_the_graph_it_serves(exported):
    """An exported folder has no model.safetensors: its weights are in the ONNX graph it serves
    (int8 by default here), and its card says how large that is."""
    from serkit.model_card import model_card

    _, out, _ = exported
    int8_mb = (out / "model.int8.onnx").stat().st_size / 1e6
    assert int8_mb >= 0.05        # the tiny model's graph still shows up to one decimal
    assert f"({int8_mb:.1f} MB of weights" in " ".join(model_card(out).split())

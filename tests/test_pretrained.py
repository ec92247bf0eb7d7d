"""Pretrained speech transformers: tiny randomly initialised wav2vec2 (group-normalised conv
features: the first GroupNorm masked to each clip's frames), HuBERT (layer-normalised: batched with an attention mask) and Whisper
(fixed window, cropped position table) saved under a temporary folder and loaded by path.

No hub, no shared data: everything is built here from synthetic tones (tests/synth.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from synth import make_backbone, tone_clip, write_tone_corpus

from serkit import cli
from serkit import training as training_mod
from serkit.bundle import WEIGHTS, BundleError, load_bundle
from serkit.audio import load_audio
from serkit.config import TrainConfig
from serkit.embeddings import embed_clips
from serkit.inference import Predictor, load_model
from serkit.manifest import read_manifest
from serkit.models.pretrained import BackboneError, PretrainedConfig, PretrainedSER, WhisperLogMel

CLIP = 0.5  # seconds: the model window of every test here

@pytest.fixture(autouse=True)
def backbone_folders_may_lie_in_tmp(monkeypatch, tmp_path_factory):
    """The bundles made here name backbone folders under pytest's temporary folder, which is not
    a place a bundle may name by default (see resolve_backbone): allow it, as a user would."""
    monkeypatch.setenv("SERKIT_BACKBONE_DIRS", str(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backbones")
    return {f: make_backbone(root, f) for f in ("wav2vec2", "hubert", "wavlm", "whisper")}


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), speakers=6, per_emotion=2, seconds=CLIP)


def config(backbone: Path, epochs: int = 3, **model_options) -> TrainConfig:
    return TrainConfig(model="pretrained", epochs=epochs, patience=50, batch_size=8, lr=5e-3, clip_seconds=CLIP,
                       cache_dir=None, progress=False, seed=0,
                       model_options={"backbone": str(backbone), "head_hidden": 16, **model_options})


def train_capture(monkeypatch, tones, out: Path, cfg: TrainConfig) -> tuple[dict, PretrainedSER, dict]:
    """Run training; return the report, the trained model and a copy of its initial weights."""
    built = {}
    original = training_mod.build_model

    def capture(c, n):
        built["model"] = original(c, n)
        built["initial"] = {k: v.clone() for k, v in built["model"].state_dict().items()}
        return built["model"]

    monkeypatch.setattr(training_mod, "build_model", capture)
    report = training_mod.train(tones.manifest, out, cfg)
    return report, built["model"], built["initial"]


def encoder_state(folder: Path, **options) -> dict[str, torch.Tensor]:
    """The backbone's encoder weights as a fresh model loads them from its folder."""
    fresh = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(folder), clip_seconds=CLIP, **options))
    return {k: v for k, v in fresh.state_dict().items() if k.startswith("encoder.")}


def waves(n: int = 6, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    names = ("angry", "happy", "sad")
    return [tone_clip(names[i % 3], float(rng.uniform(0.15, CLIP)), rng) for i in range(n)]


# --------------------------------------------------------------------------- masking

@pytest.mark.parametrize("family,options", [
    ("wav2vec2", {}), ("hubert", {}), ("hubert", {"pooling": "attention"}), ("wavlm", {}), ("whisper", {}),
    ("whisper", {"pooling": "stats", "concat_layers": True}),
    ("wav2vec2", {"pooling": "attention", "concat_layers": True, "max_layers": 1})])
def test_padding_never_changes_a_clip(backbones, family, options):
    model = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(backbones[family]), clip_seconds=CLIP,
                                           **options)).eval()
    torch.manual_seed(0)
    for p in model.head.parameters():  # a random head, so any leak of padding shows in the logits
        torch.nn.init.normal_(p, std=0.2)
    predictor = Predictor(model, {"labels": ["a", "b", "c"], "audio": {"sample_rate": 16000, "clip_seconds": CLIP}})
    short = tone_clip("happy", 0.2, np.random.default_rng(3))
    longer = [tone_clip("angry", 0.45, np.random.default_rng(4)), tone_clip("sad", CLIP, np.random.default_rng(5))]
    alone = predictor.logits([short])[0]
    batched = predictor.logits([short, *longer])[0]
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    # the same clip, unpadded, as a (1, samples) batch of its own length
    with torch.inference_mode():
        raw = model(torch.from_numpy(short)[None], torch.tensor([len(short)]))[0].numpy()
    np.testing.assert_allclose(raw, alone, atol=1e-5)
    # control: telling the model the zeros are signal does change the output
    padded = torch.from_numpy(np.pad(short, (0, int(CLIP * 16000) - len(short))))[None]
    with torch.inference_mode():
        unmasked = model(padded, torch.tensor([padded.shape[1]]))[0].numpy()
    assert np.abs(unmasked - alone).max() > 1e-3


def test_masked_group_norm_is_per_thread(backbones):
    """A web server's request threads share one model: concurrent calls with other clip lengths
    must not see each other's valid frames."""
    from concurrent.futures import ThreadPoolExecutor

    model = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(backbones["wav2vec2"]), clip_seconds=CLIP)).eval()
    torch.manual_seed(0)
    for p in model.head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    predictor = Predictor(model, {"labels": ["a", "b", "c"], "audio": {"sample_rate": 16000, "clip_seconds": CLIP}})
    clips = waves(12, seed=4)                         # 0.15-0.5 s: every call pads differently
    expected = [predictor.logits([w])[0] for w in clips]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(4) as pool:
            for _ in range(3):
                got = list(pool.map(lambda w: predictor.logits([w])[0], clips))
                np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_whisper_log_mel_matches_feature_extractor(backbones):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor.from_pretrained(str(backbones["whisper"]))
    wave = tone_clip("angry", 0.3, np.random.default_rng(0))
    reference = fe(wave, sampling_rate=16000, return_tensors="np").input_features[0]   # (20, 3000): 30 s
    ours = WhisperLogMel(fe.to_dict())(torch.from_numpy(np.pad(wave, (0, 8000 - len(wave))))[None])[0]
    assert ours.shape == (20, 50)
    np.testing.assert_allclose(ours.numpy(), reference[:, :50], atol=1e-5)


def test_truncated_encoder_keeps_the_lower_layers(backbones):
    clip = tone_clip("angry", 0.3, np.random.default_rng(5))
    wave, lengths = torch.from_numpy(np.stack([clip, clip])), torch.tensor([4800, 3000])
    for family in ("hubert", "whisper"):
        full = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(backbones[family]), clip_seconds=CLIP))
        cut = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(backbones[family]), clip_seconds=CLIP,
                                             max_layers=1))
        with torch.inference_mode():
            (m_full, _), (m_cut, _) = full.layer_stats(wave, lengths), cut.layer_stats(wave, lengths)
        assert m_full.shape[1] == 3 and m_cut.shape[1] == 2 and len(cut.layers) == 1
        torch.testing.assert_close(m_cut[:, 0], m_full[:, 0])


def test_whisper_position_table_is_cropped_to_the_window(backbones):
    model = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(backbones["whisper"]), clip_seconds=CLIP))
    assert model.encoder.embed_positions.weight.shape[0] == 25          # 0.5 s / 20 ms
    assert model.window_samples == 8000
    with pytest.raises(ValueError, match="longer than the model window"):
        model(torch.zeros(1, 9000), torch.tensor([9000]))


# --------------------------------------------------------------------------- freezing and bundles

def test_frozen_head_trains_on_cache_and_bundle_references_backbone(tmp_path, monkeypatch, tones, backbones):
    folder = backbones["wav2vec2"]
    cfg = config(folder, freeze="head")
    cfg.cache_dir = str(tmp_path / "cache")
    report, model, initial = train_capture(monkeypatch, tones, tmp_path / "run", cfg)
    assert report["n"] > 0

    state = model.state_dict()
    reference = encoder_state(folder)
    assert all(torch.equal(state[k], v) for k, v in reference.items())             # encoder bit-identical
    assert any(not torch.equal(state[k], initial[k]) for k in state if k.startswith("head."))

    bundle = tmp_path / "run" / "bundle"
    config_json = json.loads((bundle / "config.json").read_text())
    mc = config_json["model_config"]
    assert mc["backbone"] == str(folder.resolve()) and mc["checksum"].startswith("sha256:")
    from safetensors import safe_open
    with safe_open(str(bundle / WEIGHTS), "pt") as f:
        assert all(k.startswith("head.") for k in f.keys())
    assert (bundle / WEIGHTS).stat().st_size < (folder / "model.safetensors").stat().st_size / 4

    clips = waves()
    expected = Predictor(model, config_json).predict_proba(clips)
    np.testing.assert_allclose(load_model(bundle).predict_proba(clips), expected, atol=1e-6)

    cache = json.loads((bundle.parent / "cache.json").read_text())["embedding_cache"]
    assert "hits" not in config_json["training"]["embedding_cache"]
    n_train_val = cache["hits"] + cache["misses"]
    assert cache["misses"] == n_train_val > 0 and cache["hits"] == 0


def test_embedding_cache_hits_and_invalidation(tmp_path, tones, backbones):
    def run(name: str, backbone: Path, **changes) -> dict:
        cfg = config(backbone, freeze="head")
        cfg.epochs, cfg.cache_dir = 1, str(tmp_path / "cache")
        for k, v in changes.items():
            setattr(cfg, k, v)
        training_mod.train(tones.manifest, tmp_path / name, cfg)
        return json.loads((tmp_path / name / "cache.json").read_text())["embedding_cache"]

    folder = tmp_path / "backbone"
    shutil.copytree(backbones["wav2vec2"], folder)
    first = run("a", folder)
    n = first["misses"]
    assert first["hits"] == 0 and n > 0
    assert run("b", folder)["hits"] == n                                       # second run: all from the cache

    # stats pooling reads the same entries, and the head on cached embeddings equals the waveform model
    model = PretrainedSER(PretrainedConfig(n_classes=3, backbone=str(folder), pooling="stats", clip_seconds=CLIP))
    trained_on = [u for u in read_manifest(tmp_path / "a" / "split.csv") if u.split == "train"][:5]
    clips = [load_audio(u.path) for u in trained_on]
    pooled, cache = embed_clips(model, trained_on, clips, 8000, tmp_path / "cache" / "embeddings", progress=False)
    assert (cache.hits, cache.misses) == (5, 0) and pooled.shape == (5, 3, 64)
    model.eval()
    with torch.inference_mode():
        from_cache = model.head(torch.from_numpy(pooled))
        from_waves = model(torch.from_numpy(np.stack(clips)), torch.tensor([len(c) for c in clips]))
    np.testing.assert_allclose(from_cache.numpy(), from_waves.numpy(), atol=1e-5)

    shorter = run("c", folder, clip_seconds=0.4)
    assert shorter["hits"] == 0 and shorter["misses"] == n                     # audio window changed

    shutil.rmtree(folder)                                                       # same architecture, new weights
    make_backbone(tmp_path / "other", "wav2vec2", seed=7).rename(folder)
    with pytest.raises(BackboneError, match="weights changed"):                 # the old bundle notices
        load_bundle(tmp_path / "a" / "bundle")
    changed = run("d", folder)
    assert changed["hits"] == 0 and changed["misses"] == n                     # backbone changed: recomputed
    shutil.rmtree(folder)
    with pytest.raises(BackboneError, match="no such folder"):
        load_bundle(tmp_path / "a" / "bundle")


def test_frozen_attention_pooling_trains_through_waveforms(tmp_path, monkeypatch, tones, backbones):
    folder = backbones["hubert"]
    report, model, initial = train_capture(monkeypatch, tones, tmp_path / "run",
                                           config(folder, freeze="head", pooling="attention", layer_weights=False,
                                                  epochs=2))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in encoder_state(folder).items())
    assert not torch.equal(state["head.attention.weight"], initial["head.attention.weight"])
    bundle = json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())
    assert "embedding_cache" not in bundle["training"]


def test_full_fine_tune_changes_encoder_and_bundle_is_self_contained(tmp_path, monkeypatch, tones, backbones):
    folder = tmp_path / "backbone"
    shutil.copytree(backbones["whisper"], folder)
    options = {"max_layers": 1, "concat_layers": True}    # a truncated encoder fine-tunes and bundles too
    report, model, initial = train_capture(monkeypatch, tones, tmp_path / "run",
                                           config(folder, epochs=2, freeze="none", **options))
    state, reference = model.state_dict(), encoder_state(folder, **options)
    assert not any(k.startswith("encoder.layers.1.") for k in state)
    frontend = ("encoder.conv1.", "encoder.conv2.", "encoder.embed_positions.")
    changed = {k for k, v in reference.items() if not torch.equal(state[k], v)}
    assert any(k.startswith("encoder.layers.") for k in changed)
    assert not any(k.startswith(frontend) for k in changed)                    # the conv front-end stays frozen

    clips = waves()
    bundle = tmp_path / "run" / "bundle"
    expected = load_model(bundle).predict_proba(clips)
    shutil.rmtree(folder)                                                       # the backbone folder is gone
    np.testing.assert_allclose(load_model(bundle).predict_proba(clips), expected, atol=1e-6)
    config_json = json.loads((bundle / "config.json").read_text())
    np.testing.assert_allclose(Predictor(model, config_json).predict_proba(clips), expected, atol=1e-6)


def test_top_n_trains_only_the_top_layers(tmp_path, monkeypatch, tones, backbones):
    folder = backbones["hubert"]
    made = []

    class Recorded(training_mod.ClipDataset):
        def __init__(self, waves, *args, **kwargs):
            super().__init__(waves, *args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training_mod, "ClipDataset", Recorded)
    _, model, _ = train_capture(monkeypatch, tones, tmp_path / "run", config(folder, epochs=2, freeze="top:1",
                                                                          encoder_lr=1e-3))
    state, reference = model.state_dict(), encoder_state(folder)
    changed = {k for k, v in reference.items() if not torch.equal(state[k], v)}
    assert changed and all(k.startswith("encoder.encoder.layers.1.") for k in changed)
    groups = model.param_groups(0.01)
    assert [g["lr"] for g in groups] == [0.01, 1e-3]
    assert sum(p.numel() for p in groups[1]["params"]) == sum(p.numel() for p in model.layers[1].parameters())
    # a trained encoder learns from the speech the scorer will read, as the CNN-LSTM does
    (ds,) = [d for d in made if d.train]
    assert ds.spans is not None and ds.widen > 0
    assert all(0 <= s < e <= len(w) for (s, e), w in zip(ds.spans, ds.waves))


def test_bad_settings_name_the_value(backbones):
    with pytest.raises(ValueError, match="--freeze 'top:x'"):
        PretrainedConfig(freeze="top:x")
    with pytest.raises(ValueError, match="pooling 'max'"):
        PretrainedConfig(pooling="max")
    with pytest.raises(ValueError, match="top:5.*only 2 layers"):
        PretrainedSER(PretrainedConfig(backbone=str(backbones["hubert"]), freeze="top:5"))
    with pytest.raises(BundleError, match="do not fit"):
        model = PretrainedSER(PretrainedConfig(backbone=str(backbones["hubert"])))
        model.load_bundle_state_dict({"encoder.x": torch.zeros(1)})


# --------------------------------------------------------------------------- CLI

def test_unreachable_hub_name_is_one_clear_line(tmp_path, monkeypatch, capsys, tones):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))   # an empty cache to fall back on
    rc = cli.main(["train", str(tones.manifest), "--out", str(tmp_path / "run"), "--model", "pretrained",
                   "--backbone", "facebook/wav2vec2-base"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "cannot reach the model hub for 'facebook/wav2vec2-base'" in err
    assert "pass a local folder with --backbone PATH" in err
    assert "Traceback" not in err

    rc = cli.main(["train", str(tones.manifest), "--out", str(tmp_path / "run"), "--model", "pretrained",
                   "--backbone", str(tmp_path / "no-such-model")])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    rc = cli.main(["train", str(tones.manifest), "--out", str(tmp_path / "run"), "--backbone", "x/y"])
    assert rc == 2 and "add --model pretrained" in capsys.readouterr().err


def test_hub_name_loads_offline_from_the_local_cache(tmp_path, monkeypatch, backbones):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--serkit-test--tiny-hubert"
    shutil.copytree(backbones["hubert"], repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    model = PretrainedSER(PretrainedConfig(n_classes=3, backbone="serkit-test/tiny-hubert", clip_seconds=CLIP))
    assert model.config.backbone == "serkit-test/tiny-hubert"                 # the bundle keeps the name
    assert model.config.checksum == PretrainedSER(PretrainedConfig(
        n_classes=3, backbone=str(backbones["hubert"]), clip_seconds=CLIP)).config.checksum


def test_cli_train_predict_evaluate(tmp_path, capsys, tones, backbones):
    run = tmp_path / "run"
    rc = cli.main(["train", str(tones.manifest), "--out", str(run), "--model", "pretrained",
                   "--backbone", str(backbones["whisper"]), "--freeze", "head", "--pooling", "stats",
                   "--last-layer", "--epochs", "15", "--batch-size", "8", "--lr", "0.01",
                   "--cache-dir", str(tmp_path / "cache"),     # not the user's ~/.cache
                   "--vad", "energy",                          # tones are not speech to silero
                   "--model-options", json.dumps({"clip_seconds": CLIP, "head_hidden": 32})])
    out = capsys.readouterr().out
    assert rc == 0 and "bundle:" in out
    bundle_config = json.loads((run / "bundle" / "config.json").read_text())
    mc = bundle_config["model_config"]
    assert (mc["freeze"], mc["pooling"], mc["layer_weights"]) == ("head", "stats", False)
    assert "cache_dir" not in bundle_config["training"]["config"]      # a bundle records no machine's folders
    assert list((tmp_path / "cache" / "embeddings").iterdir())          # the cache was used

    files = [str(u.path) for u in tones.utterances[::9]]
    assert cli.main(["predict", *files, "--model", str(run / "bundle"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == files
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 and r["emotion"] in ("angry", "happy", "sad")
               for r in rows)
    # the tones are separable: the frozen random encoder's stats + a small head already tell them apart
    truth = {str(u.path): u.emotion for u in tones.utterances}
    assert sum(r["emotion"] == truth[r["file"]] for r in rows) >= len(rows) - 1

    assert cli.main(["evaluate", str(run / "bundle"), str(tones.manifest), "--out", str(tmp_path / "eval")]) == 0
    assert "UAR" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["n"] > 0

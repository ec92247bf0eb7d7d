"""The encoder-head family (the shipped default's): a frozen ONNX encoder's layer statistics and
a head that trains with Lightning and serves in NumPy, without torch."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from serkit.backbones import MissingBackbone, encoder_path  # noqa: E402
from serkit.inference import load_model  # noqa: E402
from serkit.models.encoder_head import EncoderHead, EncoderHeadConfig, export_stats_encoder  # noqa: E402
from serkit.runtimes import EncoderHeadRuntime, NumpyHead  # noqa: E402
from synth import make_backbone, tiny_config, write_tone_corpus  # noqa: E402


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny random Whisper encoder exported as a statistics graph (fp32 and int8)."""
    root = tmp_path_factory.mktemp("enc")
    backbone = make_backbone(root, "whisper")
    info = export_stats_encoder(str(backbone), root / "int8", max_layers=2, clip_seconds=0.5)
    export_stats_encoder(str(backbone), root / "fp32", max_layers=2, clip_seconds=0.5, int8=False)
    return root, info


def test_export_stats_encoder_matches_torch_and_records_its_source(encoder):
    root, info = encoder
    fp32 = json.loads((root / "fp32" / "backbone.json").read_text())
    assert fp32["parity_max_abs_diff_mean"] < 1e-4
    assert info["layers"] == 3 and info["dim"] == 32 and info["precision"] == "int8"
    assert info["checksum_of_source"].startswith("sha256:")
    # a folder of the user's is not written into; serkit's own encoder folder is rewritten whole
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("keep")
    from serkit.safety import OutputError
    with pytest.raises(OutputError, match="did not write"):
        export_stats_encoder(str(root / "whisper"), root / "mine", max_layers=1, clip_seconds=0.5)
    assert sorted(p.name for p in (root / "mine").iterdir()) == ["notes.txt"]
    again = export_stats_encoder(str(root / "whisper"), root / "fp32", max_layers=1, clip_seconds=0.5, int8=False)
    assert again["layers"] == 2 and json.loads((root / "fp32" / "backbone.json").read_text())["layers"] == 2


@pytest.mark.parametrize("combine,pooling,hidden", [("weighted", "stats", 16), ("concat", "mean", 0)])
def test_numpy_head_equals_the_torch_head(combine, pooling, hidden):
    torch.manual_seed(0)
    cfg = EncoderHeadConfig(n_classes=4, backbone="serkit:x", layers=[0, 2], dim=8, pooling=pooling,
                            combine=combine, head_hidden=hidden)
    head = EncoderHead(cfg)
    mean, std = np.random.default_rng(0).normal(size=(2, 5, 3, 8)).astype(np.float32)
    std = np.abs(std)
    head.fit_normalisation(head.select(mean, std) * 2 + 1)
    if head.layer_logits is not None:
        head.layer_logits.data = torch.tensor([0.3, -0.2])
    head.eval()
    with torch.no_grad():
        ref = head(torch.from_numpy(head.select(mean, std))).numpy()
    state = {k: v.numpy() for k, v in head.state_dict().items()}
    np.testing.assert_allclose(NumpyHead(state, asdict(cfg))(mean, std), ref, atol=1e-5)


def test_a_window_scores_the_same_alone_or_in_a_batch(encoder):
    """int8 graphs quantise activations per call, so the runtime runs each window alone."""
    root, _ = encoder
    head = NumpyHead({"feat_mean": np.zeros((1, 64), np.float32), "feat_std": np.ones((1, 64), np.float32),
                      "layer_logits": np.zeros(1, np.float32), "mlp.1.weight": np.eye(3, 64, dtype=np.float32),
                      "mlp.1.bias": np.zeros(3, np.float32)}, {"layers": [2], "pooling": "stats"})
    runtime = EncoderHeadRuntime(root / "int8" / "encoder.onnx", head, threads=2)
    rng = np.random.default_rng(0)
    windows = (rng.normal(size=(4, 8000)) * np.array([[0.01], [0.1], [1.0], [3.0]])).astype(np.float32)
    lengths = np.array([8000, 6000, 8000, 4000])
    together = runtime.logits(windows, lengths)
    alone = np.concatenate([runtime.logits(windows[i:i + 1], lengths[i:i + 1]) for i in range(4)])
    np.testing.assert_array_equal(together, alone)
    # the control: one batched call of the int8 graph moves a quiet window's statistics
    batched = runtime.session.run(["mean"], {"wave": windows, "lengths": lengths})[0]
    single = runtime.session.run(["mean"], {"wave": windows[:1], "lengths": lengths[:1]})[0]
    assert np.abs(batched[0] - single[0]).max() > 1e-3


@pytest.mark.parametrize("head", [
    {"head_hidden": 16, "dropout": 0.0},                                   # an MLP, trained with Lightning
    {"head_hidden": 0, "combine": "concat", "pooling": "mean"},           # linear: a logistic regression
])
def test_train_an_encoder_head_and_serve_it_without_torch(encoder, tmp_path, head):
    from serkit.training import train

    root, _ = encoder
    corpus = write_tone_corpus(tmp_path / "corpus", speakers=8, per_emotion=3, emotions=("angry", "sad", "happy"))
    cfg = tiny_config(model="encoder_head", epochs=15, lr=3e-3, batch_size=16,
                      model_options={"backbone": str(root / "int8" / "encoder.onnx"), "layers": [1, 2],
                                     "dim": 32, **head})
    report = train(corpus.manifest, tmp_path / "run", cfg)
    assert report["uar"] > 0.6            # three well-separated tones, held-out speakers
    bundle = tmp_path / "run" / "bundle"
    config = json.loads((bundle / "config.json").read_text())
    assert config["model_config"]["backbone"] == "encoder.onnx"     # carried inside, no absolute path
    assert (bundle / "encoder.onnx").is_file()
    assert config["scoring"]["aggregation"] == "mean_logits"
    if head["head_hidden"] == 0:
        assert config["training"]["head_fit"]["C"] in (0.001, 0.003, 0.01)
    # served: scoring a clip imports no torch
    clip = corpus.utterances[0].path
    code = ("import sys, serkit; m = serkit.load_model(sys.argv[1]); p = m.predict_file(sys.argv[2]); "
            "print(p.emotion, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(bundle), str(clip)], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[1] == "False" and out[0] in ("angry", "sad", "happy")
    # the published test figure is what the served model gives on the same clips
    from serkit.evaluate_cmd import evaluate_bundle
    again = evaluate_bundle(load_model(bundle), tmp_path / "run" / "split.csv", "test", progress=False)
    assert again["uar"] == pytest.approx(report["uar"]) and again["accuracy"] == pytest.approx(report["accuracy"])


def linear_heads(encoder, tmp_path, flag: str) -> dict:
    """A linear encoder head trained on a small tone corpus with ``flag`` off and on: for each, the
    training report, the bundle's config, the loaded model and the bundle folder."""
    from serkit.training import train

    root, _ = encoder
    corpus = write_tone_corpus(tmp_path / "corpus", speakers=8, per_emotion=3, emotions=("angry", "sad", "happy"))
    runs = {}
    for on in (False, True):
        cfg = tiny_config(model="encoder_head", lr=3e-3, **{flag: on},
                          model_options={"backbone": str(root / "int8" / "encoder.onnx"), "layers": [1, 2],
                                         "dim": 32, "head_hidden": 0, "combine": "concat", "pooling": "mean"})
        report = train(corpus.manifest, tmp_path / f"run{on}", cfg)
        bundle = tmp_path / f"run{on}" / "bundle"
        runs[on] = (report, json.loads((bundle / "config.json").read_text()), load_model(bundle), bundle)
    return runs


def test_a_linear_head_is_refitted_with_the_validation_speakers_but_calibrated_without_them(encoder, tmp_path):
    """Once C is chosen, the validation clips join the training (more speakers, the same C); the
    temperature and the validation figures still come from the head that never saw them, and
    the test figure is the refitted head's, as served."""
    from serkit.manifest import read_manifest
    from serkit.model_card import model_card

    runs = linear_heads(encoder, tmp_path, "refit")
    (_, before, plain, _), (report, after, refitted, bundle) = runs[False], runs[True]
    fit = after["training"]["head_fit"]
    assert "refit" not in before["training"]["head_fit"] and fit["C"] == before["training"]["head_fit"]["C"]
    parts = [u.split for u in read_manifest(tmp_path / "runTrue" / "split.csv")]
    assert fit["refit"]["clips"] == parts.count("train") + parts.count("val") > parts.count("train")
    # calibrated and validated by the head fitted without the validation speakers
    assert after["temperature"] == pytest.approx(before["temperature"])
    assert after["training"]["validation"] == before["training"]["validation"]
    # ... but the served head is another one
    w0, w1 = (m.runtime.head.linear[-1][0] for m in (plain, refitted))
    assert w0.shape == w1.shape and not np.allclose(w0, w1)
    from serkit.evaluate_cmd import evaluate_bundle
    again = evaluate_bundle(refitted, tmp_path / "runTrue" / "split.csv", "test", progress=False)
    assert again["uar"] == pytest.approx(report["uar"])
    card = " ".join(model_card(bundle).split())
    assert "then refitted on training + validation clips" in card and "then joined the training" in card
    # the card weighs the encoder the head reads, not the head alone
    head_mb = (bundle / "model.safetensors").stat().st_size / 1e6
    spec = after["model_config"]["backbone"]
    assert f"({head_mb:.1f} MB head + {encoder_path(spec, bundle).stat().st_size / 1e6:.1f} MB encoder" in card
    elsewhere = tmp_path / "copied"                    # a copy whose encoder this serkit lacks
    shutil.copytree(bundle, elsewhere)
    config = json.loads((elsewhere / "config.json").read_text())
    config["model_config"]["backbone"] = "serkit:whisper-tiny-l9"
    (elsewhere / "config.json").write_text(json.dumps(config))
    assert "head; its encoder serkit:whisper-tiny-l9 is not here" in " ".join(model_card(elsewhere).split())
    assert "not trained on" not in card
    flags = after["metrics"]["test"]["uncertain"]     # how far to trust a flag, on the test speakers
    assert 0 <= flags["share"] <= 1 and f"{100 * flags['share']:.0f} % of the test answers are flagged" in card


def test_a_linear_head_also_learns_each_clip_in_a_simulated_room(encoder, tmp_path):
    """--rooms (the default) adds one reverberant, noisy view of every training clip; --no-rooms
    trains on the recordings alone."""
    from serkit.model_card import model_card

    runs = linear_heads(encoder, tmp_path, "rooms")
    (_, c0, m0, b0), (_, c1, m1, b1) = runs[False], runs[True]
    plain, roomy = c0["training"], c1["training"]
    assert plain["encoder_cache"]["views"] == 1 and "rooms" not in plain["encoder_cache"]
    assert roomy["encoder_cache"]["views"] == 2 and "reverberated" in roomy["encoder_cache"]["rooms"]
    # the room views are extra rows: more windows through the encoder than without them (the run
    # folder counts them; the bundle does not, so that a retrain gives the same bundle)
    computed = [json.loads((b.parent / "cache.json").read_text())["encoder_cache"]["windows_computed"] for b in (b0, b1)]
    assert computed[1] > computed[0] > 0
    assert "windows_computed" not in roomy["encoder_cache"]
    w0, w1 = (m.runtime.head.linear[-1][0] for m in (m0, m1))
    assert not np.allclose(w0, w1)
    assert "in a simulated room" in " ".join(model_card(b1).split())
    assert "in a simulated room" not in " ".join(model_card(b0).split())


def test_a_room_view_keeps_length_and_loudness_and_smears_the_speech_in_time():
    from serkit.rooms import room_view

    rng = np.random.default_rng(0)
    burst = np.zeros(16000, np.float32)
    burst[2000:6000] = 0.3 * np.sin(2 * np.pi * 220 * np.arange(4000) / 16000)
    views = [room_view(burst, np.random.default_rng([7, k])) for k in range(20)]
    for v in views:
        assert v.shape == burst.shape and v.dtype == np.float32 and np.isfinite(v).all()
        assert np.mean(v ** 2) == pytest.approx(np.mean(burst ** 2), rel=0.35)
    # reverberation: energy where the burst had stopped, well above the added noise floor of a
    # silent stretch far from it (noise alone would make the two alike)
    tail = np.mean([np.mean(v[6000:7600] ** 2) for v in views])
    floor = np.mean([np.mean(v[14000:16000] ** 2) for v in views])
    assert tail > 3 * floor
    # the same seed gives the same view (cached encoder statistics depend on it); another does not
    assert np.array_equal(room_view(burst, np.random.default_rng([7, 0])), views[0])
    assert not np.allclose(views[0], views[1])
    assert room_view(np.zeros(0, np.float32), rng).shape == (0,)
    tiny = (0.1 * np.random.default_rng(3).standard_normal(28)).astype(np.float32)    # 28 samples: every draw
    assert all(room_view(tiny, np.random.default_rng([9, k])).shape == (28,) for k in range(20))
    # with other voices given, about half of the views carry their babble: in the burst's
    # silence, the voice's 144 Hz dominates the spectrum (stationary noise spreads over all bins)
    voice = 0.2 * np.sin(2 * np.pi * 144 * np.arange(16000) / 16000).astype(np.float32)
    babbly = [room_view(burst, np.random.default_rng([8, k]), [voice, voice]) for k in range(20)]
    spectra = [np.abs(np.fft.rfft(v[14000:16000])) ** 2 for v in babbly]
    share = np.array([p[17:20].sum() / p.sum() for p in spectra])     # 8 Hz bins: 144 Hz is bin 18
    assert 4 <= (share > 0.5).sum() <= 16 and (share < 0.1).sum() >= 4
    assert all(v.shape == burst.shape and np.isfinite(v).all() for v in babbly)


def test_an_encoder_head_is_validated_as_the_scorer_scores_clips(encoder):
    """The regularisation of the shipped default's head (and an MLP head's best epoch) is chosen on
    validation clips scored as users' clips are: several units for long speech, duration-weighted; no answer without speech."""
    from serkit.audio import AudioSpec
    from serkit.encoder_training import encoder_for, scored_validation, validation_uar
    from serkit.scorer import Scorer
    from synth import tone_clip

    root, _ = encoder
    cfg = EncoderHeadConfig(backbone=str(root / "fp32" / "encoder.onnx"), layers=[0, 1], dim=32, n_classes=3,
                            head_hidden=0, combine="concat", pooling="mean", dropout=0.0)
    torch.manual_seed(0)
    model = EncoderHead(cfg).eval()
    rng = np.random.default_rng(0)
    model.fit_normalisation(rng.normal(size=(20, 2, cfg.features)).astype(np.float32) * 0.1)
    gap = np.zeros(8000, np.float32)
    waves = [np.concatenate([tone_clip("angry", 1.2, rng), gap, tone_clip("sad", 0.6, rng)]),   # two units, 3 windows
             tone_clip("happy", 0.4, rng),                                                         # one short unit
             np.concatenate([gap, tone_clip("sad", 0.45, rng), gap]),                              # speech mid-clip
             np.zeros(16000, np.float32)]                                                          # no speech
    scorer = Scorer(encoder_for(model, None), [0, 1, 2], AudioSpec(clip_seconds=0.5), vad="energy")
    expected = scorer.analyse(waves)
    assert len(expected[0].segments) == 2 and expected[3].probabilities is None

    def logits(x):
        with torch.no_grad():
            return torch.log_softmax(model(torch.from_numpy(x)), -1).numpy()   # log-probabilities do as well

    from serkit.encoder_training import UnitFeatures

    got = scored_validation(UnitFeatures(scorer, scorer.runtime, model, waves))(logits)
    assert got[3] is None
    for g, e in zip(got[:3], expected[:3]):
        np.testing.assert_allclose(g, e.probabilities, atol=1e-5)
    labels = np.array([0, 1, 2, 2])
    answers = [int(np.argmax(e.probabilities)) if e.probabilities is not None else -1 for e in expected]
    want = np.mean([np.mean([a == c for a, t in zip(answers, labels) if t == c]) for c in (0, 1, 2)])
    assert validation_uar(lambda f: got, labels)(logits) == pytest.approx(want)
    # clips whose words give the emotion away (serkit.corpora.judged) do not choose: only the judged count
    onehot = [np.eye(3)[k] for k in (0, 1, 0, 2)]                  # the third (a sad clip) answered angry
    assert validation_uar(lambda f: onehot, labels)(None) == pytest.approx((1 + 1 + 0.5) / 3)
    assert validation_uar(lambda f: onehot, labels, [True, True, False, True])(None) == pytest.approx(1.0)
    # an MLP head validates in Lightning on the same units: its batches give the same answers
    from serkit.data import collate_units
    from serkit.val_metrics import score_batch

    batch = collate_units(UnitFeatures(scorer, scorer.runtime, model, waves).items(labels.tolist()))
    with torch.no_grad():
        probs, answered, y, _ = score_batch(lambda x, n: model(x), batch, 3, 4)
    assert answered.tolist() == [True, True, True, False] and y.tolist() == labels.tolist()
    np.testing.assert_allclose(probs[:3].numpy(), np.stack([e.probabilities for e in expected[:3]]), atol=1e-5)


def test_bundles_name_their_encoder_safely(tmp_path):
    assert encoder_path("serkit:whisper-base-l4", tmp_path).name == "encoder.onnx"
    for bad in ("serkit:../../etc", "serkit:nope", "/etc/passwd", "../x.onnx", "missing.onnx"):
        with pytest.raises(MissingBackbone):
            encoder_path(bad, tmp_path)


def test_a_linear_head_weighs_its_loss_as_the_pool_plan_says():
    """The closed-form head weighs each clip as a Lightning model's loss would: balanced classes
    alone reproduce scikit-learn's class_weight="balanced"; with corpus balancing a small corpus
    weighs as much as a large one."""
    from sklearn.linear_model import LogisticRegression

    from serkit.encoder_training import LINEAR_MAX_ITER, fit_linear_head, row_weights
    from serkit.manifest import Utterance
    from serkit.pool import plan_pool

    rng = np.random.default_rng(0)
    labels = ["angry", "sad", "neutral"]
    # corpus "big": 60 clips, half angry; corpus "small": 12 clips, a third of each
    y = np.array([0] * 30 + [1] * 15 + [2] * 15 + [0, 1, 2] * 4)
    corpora = ["big"] * 60 + ["small"] * 12
    utts = [Utterance(corpus=c, speaker=str(i), emotion=labels[k], path=f"{c}{i}.wav")
            for i, (c, k) in enumerate(zip(corpora, y))]
    sel = {"train": list(range(len(y))), "val": [], "test": []}

    plain = row_weights(plan_pool(utts, y.tolist(), sel, labels), y)
    sk = len(y) / (3 * np.bincount(y))          # scikit-learn's "balanced"
    np.testing.assert_allclose(plain, sk[y], rtol=1e-6)
    assert row_weights(plan_pool(utts, y.tolist(), sel, labels, class_weights=False), y) is None

    both = row_weights(plan_pool(utts, y.tolist(), sel, labels, balance_corpora=True), y)
    assert both.mean() == pytest.approx(1.0)
    # a small-corpus clip weighs 5x a big-corpus clip of the same class
    assert both[60] == pytest.approx(5 * both[0]) and both[61] == pytest.approx(5 * both[30])

    # the head is the logistic regression fitted with those weights
    x = rng.normal(size=(len(y), 1, 4)).astype(np.float32) + y[:, None, None]
    model = EncoderHead(EncoderHeadConfig(n_classes=3, layers=[0], dim=4))
    model.fit_normalisation(x)
    fit = fit_linear_head(model, x, y, lambda scores: 1.0, both)
    z = ((x - model.feat_mean.numpy()) / model.feat_std.numpy()).reshape(len(x), -1)
    ref = LogisticRegression(C=fit["C"], max_iter=LINEAR_MAX_ITER).fit(z, y, sample_weight=both)
    np.testing.assert_allclose(model.mlp[-1].weight.detach().numpy(), ref.coef_, rtol=1e-4, atol=1e-5)
    unweighted = LogisticRegression(C=fit["C"], max_iter=LINEAR_MAX_ITER).fit(z, y)
    assert not np.allclose(unweighted.coef_, ref.coef_, atol=1e-3)
    assert fit["weighted"] is True


def test_retraining_a_linear_head_gives_the_same_bundle_to_the_byte(encoder, tmp_path):
    """The second run finds every encoder window cached; its bundle is still byte for byte the
    first's (the cache counters are the run folder's, in cache.json)."""
    from serkit.training import train

    root, _ = encoder
    corpus = write_tone_corpus(tmp_path / "corpus", speakers=8, per_emotion=2, emotions=("angry", "sad"))
    counts = []
    for run in ("a", "b"):
        cfg = tiny_config(model="encoder_head", cache_dir=str(tmp_path / "cache"),
                          model_options={"backbone": str(root / "int8" / "encoder.onnx"), "layers": [1, 2],
                                         "dim": 32, "head_hidden": 0, "combine": "concat", "pooling": "mean"})
        train(corpus.manifest, tmp_path / run, cfg)
        counts.append(json.loads((tmp_path / run / "cache.json").read_text())["encoder_cache"])
    assert counts[0]["windows_computed"] > 0 and counts[1] == {"windows_computed": 0,
                                                              "windows_cached": sum(counts[0].values())}
    files = sorted(p.relative_to(tmp_path / "a" / "bundle") for p in (tmp_path / "a" / "bundle").rglob("*") if p.is_file())
    assert files
    for f in files:
        assert (tmp_path / "a" / "bundle" / f).read_bytes() == (tmp_path / "b" / "bundle" / f).read_bytes(), f


@pytest.fixture(scope="module")
def adaptable(encoder, tmp_path_factory):
    """A linear encoder head trained on tones (so it carries a speaker head): its run folder."""
    from serkit.training import train

    root, _ = encoder
    base = tmp_path_factory.mktemp("adaptable")
    corpus = write_tone_corpus(base / "corpus", speakers=8, per_emotion=3, emotions=("angry", "sad", "happy"))
    cfg = tiny_config(model="encoder_head", lr=3e-3,
                      model_options={"backbone": str(root / "int8" / "encoder.onnx"), "layers": [1, 2],
                                     "dim": 32, "head_hidden": 0, "combine": "concat", "pooling": "mean"})
    train(corpus.manifest, base / "run", cfg)
    return base / "run"


def test_a_linear_head_carries_a_speaker_head_and_adapts_clips_of_one_voice(adaptable, tmp_path, capsys):
    """Same-speaker adaptation (serkit.speaker) through the served path: the bundle carries the
    speaker head; predict_same_speaker answers what adapt() gives from each clip's windows read
    separately; a bundle without the head still loads and scores, and refuses to adapt."""
    import serkit.cli as cli
    from safetensors.numpy import load_file, save_file

    from serkit.audio import load_audio
    from serkit.bundle import BundleError
    from serkit.manifest import read_manifest
    from serkit.scorer import calibrate
    from serkit.speaker import adapt

    bundle = adaptable / "bundle"
    assert {"speaker_weight", "speaker_bias", "speaker_table"} <= set(load_file(str(bundle / "model.safetensors")))
    from serkit.model_card import model_card
    assert "adapts to one voice (serkit predict --same-speaker)" in " ".join(model_card(bundle).split())
    model = load_model(bundle)
    assert model.can_adapt
    model.temperature = 100.0    # tones are told apart with certainty: soften, so that answers can differ
    test = [u for u in read_manifest(adaptable / "split.csv") if u.split == "test"]
    voice = [u for u in test if u.speaker == test[0].speaker]
    paths = [str(u.path) for u in voice] + [str(tmp_path / "missing.wav")]
    adapted = model.predict_same_speaker(paths)
    plain = model.predict_files(paths)
    assert [p.file for p in adapted] == paths and adapted[-1].error and not adapted[0].error
    # the same answers, computed another way: each clip's windows through the encoder and both heads
    rt, logp, u = model.runtime, [], []
    for a, path in zip(model.analyse([load_audio(p, model.sample_rate) for p in paths[:-1]]),
                       paths[:-1]):
        wave = load_audio(path, model.sample_rate)
        rows, lengths, _ = model.scorer.cut([wave[s:e] for s, e in a.segments])
        assert len(a.segments) == 1
        u.append(rt.head.speaker.logits(rt.head.inputs(*rt.stats(rows, lengths))).mean(0))
        logp.append(np.log(a.probabilities))
    want = calibrate(adapt(np.array(logp), np.array(u), rt.head.speaker.table), model.temperature)
    got = np.array([[p.probabilities[label] for label in model.labels] for p in adapted[:-1]])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert [p.probabilities for p in plain[:-1]] != [p.probabilities for p in adapted[:-1]]
    # a timeline of one voice: its segments adapt as clips do
    from serkit.scorer import window_starts
    sr, gap = model.sample_rate, np.zeros(model.sample_rate // 2, np.float32)
    recording = np.concatenate([np.concatenate([load_audio(p, sr), gap]) for p in paths[:-1]])
    alone = model.predict_timeline(recording, vad="energy")
    tl = model.predict_timeline(recording, vad="energy", same_speaker=True)
    spans = [(round(g.start * sr), round(g.end * sr)) for g in tl.segments]
    assert len(spans) > 3 and spans == [(round(g.start * sr), round(g.end * sr)) for g in alone.segments]
    u = []
    for s, e in spans:
        starts = window_starts(e - s, model.clip_samples, model.spec.hop_samples)
        rows, lengths, _ = model.scorer.cut([recording[s + o:min(s + o + model.clip_samples, e)] for o in starts])
        u.append(rt.head.speaker.logits(rt.head.inputs(*rt.stats(rows, lengths))).mean(0))
    plain_logp = np.log([[g.probabilities[label] for label in model.labels] for g in alone.segments])
    want = calibrate(adapt(plain_logp, np.array(u), rt.head.speaker.table), model.temperature)
    np.testing.assert_allclose([[g.probabilities[label] for label in model.labels] for g in tl.segments], want,
                               atol=1e-3)     # the plain segments' probabilities come rounded to 4 decimals
    # voices told apart (speakers="voice"): one voice when everything merges, the plain answers when
    # nothing does (a stretch alone is not adapted); each segment says its voice, in every format
    import serkit.voices as voices
    probs = lambda t: [[g.probabilities[label] for label in model.labels] for g in t.segments]   # noqa: E731
    for threshold, same in ((2.0, tl), (-1.0, alone)):
        voices.THRESHOLD, kept = threshold, voices.THRESHOLD
        try:
            told = model.predict_timeline(recording, vad="energy", same_speaker=True, speakers="voice")
        finally:
            voices.THRESHOLD = kept
        np.testing.assert_allclose(probs(told), probs(same), atol=1e-6)
        assert told.voices and [g.voice for g in told.segments] == (
            [0] * len(spans) if threshold > 1 else list(range(len(spans))))
        assert "voice" in told.csv_header() and all("voice" in g for g in told.to_dict()["segments"])
    assert "voice" not in tl.csv_header() and not any("voice" in g for g in tl.to_dict()["segments"])
    with pytest.raises(ValueError, match="add same_speaker"):
        model.predict_timeline(recording, vad="energy", speakers="voice")
    # a recording and a clip given as one voice: every stretch of speech of either is one observation
    # of the voice and is answered adapted; the recording's answer is its stretches' duration-weighted mean
    both = [recording, load_audio(paths[0], sr)]
    plain_units = model.scorer.analyse(both, vad="energy")
    got = model.analyse_same_speaker(both, vad="energy")
    assert [a.segments for a in got] == [a.segments for a in plain_units] and all(a.adapted for a in got)
    u = []
    for wave, a in zip(both, plain_units):
        for s, e in a.segments:
            starts = window_starts(e - s, model.clip_samples, model.spec.hop_samples)
            rows, lengths, _ = model.scorer.cut([wave[s + o:min(s + o + model.clip_samples, e)] for o in starts])
            u.append(rt.head.speaker.logits(rt.head.inputs(*rt.stats(rows, lengths))).mean(0))
    logp = np.log(np.concatenate([a.segment_probabilities for a in plain_units]))
    want = calibrate(adapt(logp, np.array(u), rt.head.speaker.table), model.temperature)
    np.testing.assert_allclose(np.concatenate([a.segment_probabilities for a in got]), want, atol=1e-5)
    dur = np.array([e - s for s, e in got[0].segments], np.float64)
    np.testing.assert_allclose(got[0].probabilities, (want[:len(dur)] * dur[:, None]).sum(0) / dur.sum(), atol=1e-5)
    assert not model.analyse_same_speaker([load_audio(paths[0], sr)], vad="energy")[0].adapted   # one stretch
    # the CLI: the tables say it adapted, or on stderr why it did not (one clip, one segment)
    import soundfile as sf
    assert cli.main(["predict", "--model", str(bundle), "--same-speaker", *paths[:-1]]) == 0
    printed = capsys.readouterr()
    assert "adapted to one speaker" in printed.out and ("fewer than 8 stretches of speech" in printed.err) == (len(paths) < 9)
    assert cli.main(["predict", "--model", str(bundle), "--same-speaker", paths[0]]) == 0
    printed = capsys.readouterr()
    assert "adapted" not in printed.out and "fewer than 2 stretches of speech: answered as they are" in printed.err
    sf.write(tmp_path / "recording.wav", recording, sr)
    assert cli.main(["predict", "--model", str(bundle), "--same-speaker", "--timeline", "--vad", "energy",
                     str(tmp_path / "recording.wav"), paths[0]]) == 0
    printed = capsys.readouterr()
    assert "(vad energy), adapted to one speaker" in " ".join(printed.out.split())           # the recording
    assert "1 segment (vad energy) start" in " ".join(printed.out.split())                    # the one clip
    assert "1 of 2 voice(s) had fewer than 2 stretches of speech" in " ".join(printed.err.split())
    # a batch job of one voice: the adapted answers (at the bundle's temperature), the failed file's row too
    rows_csv = tmp_path / "rows.csv"
    assert cli.main(["predict", "--model", str(bundle), "--same-speaker", "--output", str(rows_csv), *paths]) == 1
    assert f"{len(paths)} files: {len(paths) - 1} scored, 1 failed" in capsys.readouterr().err
    rows = list(csv.DictReader(rows_csv.open()))
    expected = load_model(bundle).predict_same_speaker(paths)
    assert [r["file"] for r in rows] == paths and rows[-1]["error"]
    for row, want in zip(rows[:-1], expected[:-1]):
        assert row["emotion"] == want.emotion
        assert [float(row[label]) for label in model.labels] == pytest.approx(
            [want.probabilities[label] for label in model.labels], abs=1e-4)
    written = rows_csv.read_bytes()
    # resuming a finished job scores nothing; Ray cannot run it; the file stays as it was
    assert cli.main(["predict", "--model", str(bundle), "--same-speaker", "--output", str(rows_csv), "--resume",
                     *paths]) == 0
    assert f"0 scored, 0 failed, {len(paths)} already done" in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(bundle), "--same-speaker", "--output", str(rows_csv), "--engine",
                     "ray", *paths]) == 2
    assert "--engine ray cannot" in " ".join(capsys.readouterr().err.split())
    assert rows_csv.read_bytes() == written
    # a bundle from before the speaker head: loads, scores the same, refuses to adapt, says why
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    state = {k: v for k, v in load_file(str(old / "model.safetensors")).items() if not k.startswith("speaker_")}
    save_file(state, str(old / "model.safetensors"))
    before = load_model(old)
    before.temperature = model.temperature
    assert not before.can_adapt
    assert [p.probabilities for p in before.predict_files(paths[:-1])] == [p.probabilities for p in plain[:-1]]
    with pytest.raises(BundleError, match="no speaker head"):
        before.predict_same_speaker(paths[:-1])
    with pytest.raises(BundleError, match="no speaker head"):
        before.predict_timeline(recording, vad="energy", same_speaker=True)
    assert cli.main(["predict", "--model", str(old), "--same-speaker", *paths[:-1]]) == 2
    assert cli.main(["predict", "--model", str(old), "--same-speaker", "--output", str(tmp_path / "old.csv"),
                     *paths[:-1]]) == 2
    assert "no speaker head" in capsys.readouterr().err and not (tmp_path / "old.csv").exists()


def test_the_web_api_answers_a_recording_as_one_voice(adaptable):
    """POST /api/predict with same_speaker: the recording's segments are answered as adapt()
    gives them from each segment's windows (and the emotion is their duration-weighted mean);
    a single segment is not adapted; a model without a speaker head or a bad value is a 400."""
    import io

    import soundfile as sf
    from safetensors.numpy import load_file, save_file

    from serkit.audio import load_audio
    from serkit.manifest import read_manifest
    from serkit.scorer import calibrate, window_starts
    from serkit.speaker import adapt
    from serkit.web import create_app

    model = load_model(adaptable / "bundle")
    model.temperature = 10.0           # soften the tones' certain answers, so that adapting can change them
    old = adaptable.parent / "old"     # the same bundle without its speaker head
    shutil.copytree(adaptable / "bundle", old, dirs_exist_ok=True)
    save_file({k: v for k, v in load_file(str(old / "model.safetensors")).items() if not k.startswith("speaker_")},
              str(old / "model.safetensors"))
    client = create_app({"SERKIT_MODELS": {"adaptable": model, "old": old}}).test_client()
    assert [m["can_adapt"] for m in client.get("/api/models").get_json()["models"]] == [True, False]
    assert '"can_adapt": true' in client.get("/").get_data(as_text=True)     # the page offers it

    test = [u for u in read_manifest(adaptable / "split.csv") if u.split == "test"]
    sr = model.sample_rate
    gap = np.zeros(sr // 2, np.float32)
    recording = np.concatenate([np.concatenate([load_audio(u.path, sr), gap])
                                for u in test if u.speaker == test[0].speaker])
    body = io.BytesIO()
    sf.write(body, recording, sr, format="WAV", subtype="FLOAT")

    def post(**form):
        return client.post("/api/predict", data={"file": (io.BytesIO(body.getvalue()), "r.wav"), "vad": "energy",
                                                 **form}, content_type="multipart/form-data")

    plain, one = post().get_json(), post(same_speaker="true").get_json()
    assert not plain["adapted"] and one["adapted"]
    spans = [(round(g["start"] * sr), round(g["end"] * sr)) for g in one["timeline"]]
    assert len(spans) > 3 and spans == [(round(g["start"] * sr), round(g["end"] * sr)) for g in plain["timeline"]]
    rt, u = model.runtime, []
    for s, e in spans:
        starts = window_starts(e - s, model.clip_samples, model.spec.hop_samples)
        rows, lengths, _ = model.scorer.cut([recording[s + o:min(s + o + model.clip_samples, e)] for o in starts])
        u.append(rt.head.speaker.logits(rt.head.inputs(*rt.stats(rows, lengths))).mean(0))
    as_array = lambda d: np.array([d[label] for label in model.labels])   # noqa: E731
    analysis = model.scorer.analyse([recording], vad="energy")[0]   # the plain answers unrounded
    assert analysis.segments == spans
    logp = np.log(analysis.segment_probabilities)
    want = calibrate(adapt(logp, np.array(u), rt.head.speaker.table), model.temperature)
    got = np.array([as_array(g["probabilities"]) for g in one["timeline"]])
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert not np.allclose(got, np.exp(logp), atol=1e-3)
    dur = np.array([e - s for s, e in spans], np.float64)
    np.testing.assert_allclose(as_array(one["probabilities"]), (want * dur[:, None]).sum(0) / dur.sum(), atol=2e-4)
    assert one["emotion"] == model.labels[int(np.argmax((want * dur[:, None]).sum(0)))]

    # one segment: nothing to adapt to, the plain answer
    short = io.BytesIO()
    sf.write(short, load_audio(test[0].path, sr), sr, format="WAV", subtype="FLOAT")
    alone = [client.post("/api/predict?vad=energy" + q, data=short.getvalue(), content_type="audio/wav").get_json()
             for q in ("", "&same_speaker=1")]
    assert not alone[1]["adapted"] and alone[0]["probabilities"] == alone[1]["probabilities"]
    # refusals
    r = post(same_speaker="true", model="old")
    assert r.status_code == 400 and r.get_json()["error"] == "cannot_adapt"
    assert post(same_speaker="false", model="old").status_code == 200
    r = post(same_speaker="maybe")
    assert r.status_code == 400 and "same_speaker 'maybe'" in r.get_json()["message"]

    # speakers=voice: the voices told apart as the timeline tells them, each adapted; one scoring path
    assert [m["can_tell_voices"] for m in client.get("/api/models").get_json()["models"]] == [True, False]
    told = post(same_speaker="true", speakers="voice").get_json()
    tl = model.predict_timeline(recording, vad="energy", same_speaker=True, speakers="voice")
    assert told["voices"] == len({g.voice for g in tl.segments}) and "voices" in plain and plain["voices"] is None
    assert [g["voice"] for g in told["timeline"]] == [g.voice for g in tl.segments]
    np.testing.assert_allclose([as_array(g["probabilities"]) for g in told["timeline"]],
                               [as_array(g.probabilities) for g in tl.segments], atol=2e-4)
    assert all("voice" not in g for g in one["timeline"])
    r = post(speakers="voice")
    assert r.status_code == 400 and "add same_speaker=true" in r.get_json()["message"]
    r = post(same_speaker="true", speakers="two")
    assert r.status_code == 400 and "speakers 'two'" in r.get_json()["message"]
    import serkit.voices as voices

    def no_scipy():
        raise ValueError("no SciPy")
    from serkit.web.service import can_tell_voices
    real, voices.clustering = voices.clustering, no_scipy
    can_tell_voices.cache_clear()              # asked once per process: a server without SciPy
    try:
        r = post(same_speaker="true", speakers="voice")
        assert r.status_code == 400 and r.get_json()["error"] == "cannot_tell_voices"
        assert [m["can_tell_voices"] for m in client.get("/api/models").get_json()["models"]] == [False, False]
    finally:
        voices.clustering = real
        can_tell_voices.cache_clear()


def test_a_batch_job_adapts_each_folder_to_its_own_voice_and_resumes_a_group_whole(adaptable, tmp_path, capsys):
    """--same-speaker --speakers folder: each folder's rows are that folder's files answered as
    one voice (not all the files as one); a resumed job scores an unfinished folder again, whole,
    and writes the same rows it lacked."""
    import soundfile as sf

    import serkit.cli as cli
    from serkit.manifest import read_manifest

    soft = tmp_path / "soft"       # the bundle with a softer temperature: tones are told apart with certainty
    shutil.copytree(adaptable / "bundle", soft)
    config = json.loads((soft / "config.json").read_text())
    (soft / "config.json").write_text(json.dumps({**config, "temperature": 10.0}))
    model = load_model(soft)
    test = [u for u in read_manifest(adaptable / "split.csv") if u.split != "train"]   # voices it never learnt
    folders = []
    for speaker in sorted({u.speaker for u in test})[:2]:
        folder = tmp_path / "voices" / speaker
        folder.mkdir(parents=True)
        for u in test:
            if u.speaker == speaker:   # the second voice an octave lower and quieter: an offset of its own
                wave, sr = sf.read(u.path, dtype="float32")
                sf.write(folder / f"{u.path.stem}.wav", np.repeat(wave, 2) * 0.5 if folders else wave, sr)
        folders.append(folder)
    out = tmp_path / "rows.jsonl"
    job = ["predict", "--model", str(soft), "--same-speaker", "--speakers", "folder", "--output", str(out),
           *map(str, folders)]
    assert cli.main(job) == 0
    rows = {r["file"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(folders) == 2 and len(rows) == sum(len(list(f.iterdir())) for f in folders)
    for folder in folders:
        mine = sorted(str(p) for p in folder.iterdir())
        for want in model.predict_same_speaker(mine):
            assert rows[want.file]["emotion"] == want.emotion
            assert rows[want.file]["probabilities"] == pytest.approx(want.probabilities, abs=1e-4)
    together = {p.file: p.probabilities for p in model.predict_same_speaker(sorted(rows))}
    assert any(abs(together[f][k] - rows[f]["probabilities"][k]) > 1e-3 for f in rows for k in model.labels)
    # a job killed while writing the second folder's rows: resumed, that folder is scored whole again
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-2]) + lines[-2][:10])
    assert cli.main([*job, "--resume"]) == 0
    assert sorted(out.read_text().splitlines()) == sorted(line.rstrip("\n") for line in lines)
    assert "2 scored" in capsys.readouterr().err
    # --speakers says which files are one voice for --same-speaker: alone, or with --timeline, refused
    assert cli.main(["predict", "--model", str(soft), "--speakers", "folder", *map(str, folders)]) == 2
    assert cli.main(["predict", "--model", str(soft), "--same-speaker", "--speakers", "folder", "--timeline",
                     str(folders[0])]) == 2
    assert "with --timeline each recording is one voice, or --speakers voice" in " ".join(capsys.readouterr().err.split())


def test_evaluate_answers_each_speaker_as_one_voice(adaptable, tmp_path, capsys):
    """serkit evaluate --same-speaker: the report's figures are those of predict_same_speaker on
    each test speaker's clips (the one scoring path); a model without a speaker head is refused
    before any work."""
    import serkit.cli as cli
    from serkit.evaluate_cmd import evaluate_bundle
    from serkit.manifest import read_manifest

    soft = tmp_path / "soft"
    shutil.copytree(adaptable / "bundle", soft)
    config = json.loads((soft / "config.json").read_text())
    (soft / "config.json").write_text(json.dumps({**config, "temperature": 10.0}))
    model = load_model(soft)
    test = [u for u in read_manifest(adaptable / "split.csv") if u.split == "test"]
    report = evaluate_bundle(model, adaptable / "split.csv", "test", progress=False, same_speaker=True)
    right = []
    for speaker in sorted({u.speaker for u in test}):
        mine = [u for u in test if u.speaker == speaker]
        right += [p.emotion == u.emotion for u, p in zip(mine, model.predict_same_speaker([u.path for u in mine]))]
    assert report["n"] == len(test) and report["accuracy"] == pytest.approx(np.mean(right))
    assert report["split"] == "test, each speaker's clips as one voice"
    plain = evaluate_bundle(model, adaptable / "split.csv", "test", progress=False)
    assert plain["calibration"]["ece_after"] != pytest.approx(report["calibration"]["ece_after"], abs=1e-6)
    assert cli.main(["evaluate", str(soft), str(adaptable / "split.csv"), "--same-speaker"]) == 0
    assert "on test, each speaker's clips as one voice" in capsys.readouterr().out
    nameless = tmp_path / "nameless.csv"     # a manifest without speakers: every clip would be one voice
    rows = list(csv.DictReader((adaptable / "split.csv").open()))
    with nameless.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "Speaker": "", "File": str((adaptable / r["File"]).resolve())} for r in rows)
    assert cli.main(["evaluate", str(soft), str(nameless), "--split", "all", "--same-speaker"]) == 2
    assert "names no speaker for" in capsys.readouterr().err
    fast = tmp_path / "old"        # the same bundle without its speaker head
    shutil.copytree(adaptable / "bundle", fast)
    from safetensors.numpy import load_file, save_file
    save_file({k: v for k, v in load_file(str(fast / "model.safetensors")).items() if not k.startswith("speaker_")},
              str(fast / "model.safetensors"))
    assert cli.main(["evaluate", str(fast), str(adaptable / "split.csv"), "--same-speaker", "--out",
                     str(tmp_path / "eval")]) == 2
    assert "no speaker head" in capsys.readouterr().err and not (tmp_path / "eval").exists()

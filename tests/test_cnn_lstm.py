"""The CNN-LSTM: shapes, masking of padding, SpecAugment only while training, and that it learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from serkit.models import cnn_lstm
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig, spec_augment
from synth import EMOTIONS, SR, tone_clip, trained_run

WINDOW = SR  # 1 s windows keep these tests fast


def small(**kw) -> CNNLSTM:
    torch.manual_seed(0)
    return CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16, **kw))


def batch(*seconds: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise clips of the given lengths, zero-padded into one (batch, WINDOW) tensor."""
    rng = np.random.default_rng(seed)
    x = np.zeros((len(seconds), WINDOW), np.float32)
    lengths = []
    for i, s in enumerate(seconds):
        n = int(s * SR)
        x[i, :n] = 0.3 * rng.standard_normal(n)
        lengths.append(n)
    return torch.from_numpy(x), torch.tensor(lengths)


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_output_shape(pooling):
    model = small(pooling=pooling).eval()
    wave, lengths = batch(1.0, 0.4, 0.7)
    with torch.no_grad():
        out = model(wave, lengths)
    assert out.shape == (3, 3)
    assert torch.isfinite(out).all()
    with torch.no_grad():  # without lengths every frame counts
        assert model(wave).shape == (3, 3)


def test_default_config_shape_on_three_second_windows():
    model = CNNLSTM(CNNLSTMConfig(n_classes=6)).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3 * SR).normal_(0, 0.1), torch.tensor([3 * SR, SR]))
    assert out.shape == (2, 6)


def test_bad_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooling"):
        CNNLSTM(CNNLSTMConfig(pooling="max"))


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_padding_is_masked_in_a_batch(pooling):
    """A short clip's logits do not depend on which longer clips share its batch."""
    model = small(pooling=pooling).eval()
    short_alone, len_alone = batch(0.45, seed=1)
    together, lens = batch(0.45, 1.0, 0.8, seed=1)
    other, other_lens = batch(0.45, 0.9, seed=1)
    together[1:] = torch.randn_like(together[1:]) * 0.5            # louder, longer neighbours
    with torch.no_grad():
        alone = model(short_alone, len_alone)[0]
        in_batch = model(together, lens)[0]
        in_other = model(other, other_lens)[0]
    torch.testing.assert_close(in_batch, alone, atol=1e-4, rtol=0)
    torch.testing.assert_close(in_other, alone, atol=1e-4, rtol=0)


def test_lengths_change_the_result_for_padded_clips():
    """The mask is not vacuous: telling the model a clip is shorter changes what it sees."""
    model = small().eval()
    wave, _ = batch(0.5, seed=2)
    with torch.no_grad():
        masked = model(wave, torch.tensor([SR // 2]))
        full = model(wave, torch.tensor([WINDOW]))
        none = model(wave)
    torch.testing.assert_close(full, none)                          # full length == no lengths
    assert (masked - full).abs().max() > 1e-3


def test_spec_augment_masks_bands_along_one_axis():
    torch.manual_seed(0)
    x = torch.ones(8, 64, 100)
    freq = spec_augment(x, n_masks=2, width=8, dim=1)
    zero_rows = (freq == 0).all(dim=2)                              # (batch, mels): whole mel bands
    assert ((freq == 0) == zero_rows[:, :, None]).all()             # nothing else is zeroed
    assert zero_rows.sum(dim=1).max() <= 16 and zero_rows.any()
    time = spec_augment(x, n_masks=2, width=25, dim=2)
    zero_cols = (time == 0).all(dim=1)                              # (batch, frames)
    assert ((time == 0) == zero_cols[:, None, :]).all()
    assert zero_cols.sum(dim=1).max() <= 50 and zero_cols.any()
    assert torch.equal(spec_augment(x, 0, 8, dim=1), x)
    assert torch.equal(x, torch.ones(8, 64, 100))                   # input left alone


def test_spec_augment_only_while_training(monkeypatch):
    calls = []
    real = cnn_lstm.spec_augment
    monkeypatch.setattr(cnn_lstm, "spec_augment", lambda *a, **k: calls.append(k["dim"]) or real(*a, **k))
    model = small(dropout=0.0)
    wave, lengths = batch(1.0, 0.6, 0.8, 0.9, seed=3)

    model.train()
    with torch.no_grad():
        a, b = model(wave, lengths), model(wave, lengths)
    assert sorted(calls) == [1, 1, 2, 2]                            # freq and time masks, per call
    assert (a - b).abs().max() > 1e-4                               # random masks: outputs differ

    calls.clear()
    model.eval()
    with torch.no_grad():
        c, d = model(wave, lengths), model(wave, lengths)
    assert calls == []
    assert torch.equal(c, d)                                        # eval is deterministic


def test_train_mode_without_masks_or_dropout_is_deterministic():
    """The randomness seen in train mode above comes from SpecAugment."""
    model = small(dropout=0.0, freq_masks=0, time_masks=0).train()
    wave, lengths = batch(1.0, 0.6, 0.8, 0.9, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model(wave, lengths), model(wave, lengths))


def test_model_learns_separable_synthetic_classes(tmp_path_factory):
    """Trained through serkit.training.train on tones/noise: held-out speakers are classified."""
    from serkit.inference import load_model

    corpus, run, report = trained_run(tmp_path_factory)
    assert report["labels"] == list(EMOTIONS)
    assert report["n"] >= 12
    assert report["accuracy"] >= 0.9
    assert report["uar"] >= 0.9

    # fresh clips never seen in training (new random draws), scored through the bundle
    predictor = load_model(run / "bundle")
    rng = np.random.default_rng(1234)
    truth = [e for e in EMOTIONS for _ in range(5)]
    probs = predictor.predict_proba([tone_clip(e, 0.5, rng) for e in truth])
    predicted = [predictor.labels[i] for i in probs.argmax(1)]
    assert np.mean([p == t for p, t in zip(predicted, truth)]) >= 0.9


@pytest.mark.parametrize("downsample", ["pool", "stride"])
def test_fused_batchnorm_gives_the_same_logits(downsample):
    model = small(downsample=downsample)
    with torch.no_grad():   # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    model.eval()
    wave, lengths = batch(1.0, 0.4, 0.7)
    with torch.no_grad():
        before = model(wave, lengths)
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        after = model.fuse_batchnorm()(wave, lengths)
    assert n_bn == 3 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_downsample_variants_reach_the_same_lstm_input():
    pool, stride = CNNLSTM(CNNLSTMConfig(n_classes=6, downsample="pool")), CNNLSTM(CNNLSTMConfig(n_classes=6))
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in pool.modules()) == 2
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in stride.modules()) == 0
    assert pool.lstm.input_size == stride.lstm.input_size
    with torch.no_grad():
        assert stride.eval()(torch.zeros(2, 3 * SR).normal_(0, 0.1), torch.tensor([3 * SR, SR])).shape == (2, 6)
    with pytest.raises(ValueError, match="downsample"):
        CNNLSTM(CNNLSTMConfig(downsample="avg"))


def test_bundles_written_before_downsample_existed_load_as_pool(tmp_path):
    """Both designs have the same weight shapes, so only the stored (or legacy) setting tells
    them apart: an old bundle must not silently load into today's default design."""
    import json

    from serkit.bundle import load_bundle, save_bundle

    old = small(downsample="pool", n_fft=512).eval()
    folder = save_bundle(tmp_path / "old", old, ["a", "b", "c"], {"sample_rate": SR, "clip_seconds": 1.0})
    config = json.loads((folder / "config.json").read_text())
    del config["model_config"]["downsample"]                     # as the first bundles were written
    (folder / "config.json").write_text(json.dumps(config))
    model, _ = load_bundle(folder)
    assert model.config.downsample == "pool" and model.config.n_fft == 512
    wave, lengths = batch(1.0, 0.6)
    with torch.no_grad():
        torch.testing.assert_close(model(wave, lengths), old(wave, lengths))
    assert CNNLSTMConfig().downsample == "stride" and CNNLSTMConfig().n_fft == 400   # today's defaults

"""Training switches beyond the defaults: mixup, speed perturbation and simulated rooms."""
from __future__ import annotations

import numpy as np
import torch

from serkit.data import Augment, ClipDataset, training_augment
from serkit.training import SERModule, TrainConfig, train
from tests.synth import tiny_config, write_tone_corpus


def test_mixup_loss_is_the_mix_of_both_targets_losses():
    """With mixup the loss is lam * CE(y) + (1 - lam) * CE(y[perm]) on the mixed input."""
    class Identity(torch.nn.Module):  # logits = the input, so the loss can be computed by hand
        def forward(self, wave, lengths):
            return wave

    module = SERModule(Identity(), TrainConfig(mixup=0.4, label_smoothing=0.0), None)
    wave = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    y = torch.tensor([0, 1])
    module.log = lambda *a, **k: None
    torch.manual_seed(1)
    loss = module.training_step((wave, torch.tensor([3, 3]), y), 0)
    torch.manual_seed(1)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(2)
    mixed = lam * wave + (1 - lam) * wave[perm]
    ce = torch.nn.functional.cross_entropy
    expected = lam * ce(mixed, y) + (1 - lam) * ce(mixed, y[perm])
    assert torch.allclose(loss, expected)


def test_speed_perturbation_changes_length_and_can_be_switched_off():
    wave = np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32)
    rng = np.random.default_rng(0)
    on = {len(Augment(speed_prob=1.0, noise_prob=0.0)(wave, rng)) for _ in range(5)}
    off = {len(Augment(speed_prob=0.0, noise_prob=0.0)(wave, rng)) for _ in range(5)}
    assert off == {8000}
    assert len(on) > 1 and all(7200 <= n <= 8900 for n in on)
    ds = ClipDataset([wave], [0], 16000, train=True, augment=Augment(speed_prob=1.0), seed=0)
    _, length, _ = ds[0]
    assert length != 8000  # the valid length follows the perturbed clip


def test_training_with_mixup_still_learns_separable_classes(tmp_path):
    corpus = write_tone_corpus(tmp_path / "corpus", speakers=8, per_emotion=4)
    report = train(corpus.manifest, tmp_path / "run", tiny_config(mixup=0.4, epochs=8))
    assert report["uar"] >= 0.8


def test_a_room_reverberates_the_clip_over_other_speakers_voices_only_when_drawn():
    """With room_prob 1 every clip is heard in a room (its energy smeared past the end of the
    speech, over the babble of voices asked for only then); with 0 the voices are never asked for."""
    sr = 16000
    burst = np.zeros(sr, np.float32)
    burst[:4000] = np.sin(2 * np.pi * 300 * np.arange(4000) / sr)     # 0.25 s of sound, then silence
    asked = []

    def voices():
        asked.append(1)
        return [np.sin(2 * np.pi * 170 * np.arange(sr) / sr).astype(np.float32)]

    quiet = Augment(speed_prob=0.0, gain_db=0.0, noise_prob=0.0)
    assert np.array_equal(quiet(burst, np.random.default_rng(0), voices), burst) and not asked
    roomed = Augment(speed_prob=0.0, gain_db=0.0, noise_prob=0.0, room_prob=1.0)
    out = roomed(burst, np.random.default_rng(0), voices)
    assert asked and out.shape == burst.shape and out.dtype == np.float32
    tail = float(np.mean(out[6000:] ** 2))          # after the burst: its reverberation, babble, noise
    assert tail > 1e-4 * float(np.mean(burst[:4000] ** 2))
    assert np.allclose(np.mean(out ** 2), np.mean(burst ** 2), rtol=0.5)   # about as loud as the clip


def test_the_babble_of_a_training_clip_comes_from_other_speakers_speech():
    waves = [np.full(100, k, np.float32) for k in range(6)]
    groups = ["a", "a", "b", "b", "c", "c"]
    spans = [(10, 60)] * 6
    ds = ClipDataset(waves, [0] * 6, 80, train=True, augment=Augment(room_prob=1.0), seed=0,
                     spans=spans, groups=groups)
    for _ in range(10):
        picked = ds.voices(0)
        assert len(picked) == 3 and {float(v[0]) for v in picked} <= {2.0, 3.0, 4.0, 5.0}
        assert all(len(v) == 50 for v in picked)                     # the speech span, not the clip
    assert ClipDataset(waves, [0] * 6, 80).voices(0) == []            # no speakers known: no babble
    few = ClipDataset(waves[:3], [0] * 3, 80, groups=["a", "a", "b"])  # fewer other voices than a babble's 3
    assert [float(v[0]) for v in few.voices(0)] == [2.0] and few.voices(2) and len(few.voices(2)) == 2
    assert ClipDataset(waves[:2], [0] * 2, 80, groups=["a", "a"]).voices(0) == []   # one speaker: none
    for i in range(6):                                               # and the dataset still serves items
        wave, length, _ = ds[i]
        assert wave.shape == (80,) and 0 < length <= 80


def test_training_settings_choose_the_waveform_augmentation():
    assert training_augment(TrainConfig(augment=False)) is None
    assert training_augment(TrainConfig()).room_prob == 0.3
    assert training_augment(TrainConfig(rooms=False)).room_prob == 0.0
    assert training_augment(TrainConfig(speed_perturb=False)).speed_prob == 0.0


def test_a_cnn_lstm_trained_with_rooms_says_so_in_its_card(tmp_path):
    from serkit.model_card import model_card

    corpus = write_tone_corpus(tmp_path / "corpus", speakers=6, per_emotion=3)
    train(corpus.manifest, tmp_path / "on", tiny_config(epochs=1, rooms=True))
    train(corpus.manifest, tmp_path / "off", tiny_config(epochs=1, rooms=False))
    assert "30% of training clips heard in a simulated room" in " ".join(model_card(tmp_path / "on" / "bundle").split())
    assert "simulated room" not in model_card(tmp_path / "off" / "bundle")

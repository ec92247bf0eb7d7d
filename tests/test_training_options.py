"""Training switches beyond the defaults: mixup, speed perturbation, simulated rooms and the weights' moving average."""
from __future__ import annotations

import json

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


def test_ema_validates_and_ships_the_moving_average_of_the_weights(tmp_path, monkeypatch):
    """With ``ema``, what validation scores, the best epoch kept and the bundle's weights are the
    exponential moving average of the weights after every optimiser step, recomputed here by hand
    from the raw weights of each step; the raw weights go on training unchanged by it."""
    import pytest
    from safetensors.torch import load_file

    import serkit.training as training

    decay = 0.8
    raw: list[dict[str, torch.Tensor]] = []       # the model's own weights after each step
    seen: list[tuple[int, dict[str, torch.Tensor]]] = []   # (steps so far, weights at validation)

    def floats(module):
        return {k: v.detach().clone() for k, v in module.model.state_dict().items() if v.is_floating_point()}

    class Recording(training.AveragedWeights):
        def on_train_batch_end(self, trainer, pl_module, *args):
            super().on_train_batch_end(trainer, pl_module, *args)
            raw.append(floats(pl_module))

        def on_validation_end(self, trainer, pl_module):
            seen.append((len(raw), floats(pl_module)))
            super().on_validation_end(trainer, pl_module)

    monkeypatch.setattr(training, "AveragedWeights", Recording)
    corpus = write_tone_corpus(tmp_path / "c", speakers=7, per_emotion=3, seed=3)
    train(corpus.manifest, tmp_path / "run", tiny_config(epochs=3, ema=decay))
    assert len(seen) == 3 and len(raw) > 3

    average, by_step = None, {}
    for step, weights in enumerate(raw, 1):
        average = dict(weights) if average is None else {k: decay * average[k] + (1 - decay) * weights[k]
                                                         for k in weights}
        by_step[step] = average
    for steps, weights in seen:
        for k, v in weights.items():
            assert torch.allclose(v, by_step[steps][k], atol=1e-5), k
    assert any(not torch.allclose(seen[-1][1][k], raw[-1][k]) for k in raw[-1]), "nothing was averaged"

    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())["epoch"]
    shipped = load_file(str(tmp_path / "run" / "bundle" / "model.safetensors"))
    for k, v in seen[best][1].items():
        assert torch.equal(shipped[k], v), k
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)


def test_an_interrupted_run_with_ema_resumes_with_its_average(tmp_path, monkeypatch):
    """last.ckpt holds both the raw weights and the average (Lightning's format for averaging), so
    a resumed run goes on averaging from where it stopped instead of from the raw weights."""
    import pytest

    import serkit.training as training

    class Crash(RuntimeError):
        pass

    class CrashAtEpoch2(training.BestWeights):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                raise Crash("power cut")

    corpus = write_tone_corpus(tmp_path / "c", speakers=7, per_emotion=3, seed=3)
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(training, "BestWeights", CrashAtEpoch2)
        with pytest.raises(Crash):
            train(corpus.manifest, run, tiny_config(epochs=4, ema=0.8))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)   # our own file, tensors only
    assert {"current_model_state", "averaging_state"} <= set(ckpt)
    average = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    current = {k.removeprefix("model."): v for k, v in ckpt["current_model_state"].items() if k.startswith("model.")}
    assert any(not torch.equal(average[k], current[k]) for k in average if average[k].is_floating_point())

    resumed: list[dict[str, torch.Tensor]] = []

    class Watch(training.AveragedWeights):
        def on_train_epoch_start(self, trainer, pl_module):
            resumed.append({k: v.clone() for k, v in self._average_model.module.model.state_dict().items()})

    monkeypatch.setattr(training, "AveragedWeights", Watch)
    report = train(corpus.manifest, run, resume=True)
    assert report["n"] > 0 and len(resumed) == 2
    for k, v in average.items():     # epoch 2 starts from the saved average, not from the raw weights
        assert torch.equal(resumed[0][k], v), k

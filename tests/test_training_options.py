"""Training switches beyond the defaults: mixup and speed perturbation."""
from __future__ import annotations

import numpy as np
import torch

from serkit.data import Augment, ClipDataset
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

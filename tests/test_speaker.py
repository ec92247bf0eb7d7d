"""serkit.speaker: a speaker's offset estimated class by class from a batch of their clips."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serkit.speaker import adapt, centred, fit_speaker_head

CLASSES, DIM = 3, 6


def voices(n_speakers: int, per_class: int, rng: np.random.Generator, spread: float = 3.0):
    """Features = the speaker's offset (large) + the class's mean + noise; every speaker has every
    class equally, as the acted corpora do."""
    class_means = rng.normal(0, 1.5, (CLASSES, DIM))
    x, y, spk = [], [], []
    for s in range(n_speakers):
        offset = rng.normal(0, spread, DIM)
        for c in range(CLASSES):
            x.append(offset + class_means[c] + rng.normal(0, 0.5, (per_class, DIM)))
            y += [c] * per_class
            spk += [s] * per_class
    return np.concatenate(x), np.array(y), np.array(spk), class_means


def test_the_head_reads_centred_features_as_the_standardised_regression_does():
    rng = np.random.default_rng(0)
    x, y, spk, _ = voices(12, 10, rng)
    w = rng.uniform(0.5, 2.0, len(y))
    head = fit_speaker_head(x, y, spk, c=0.3, sample_weight=w)
    g = centred(x, spk)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=1000))
    ref.fit(g, y, logisticregression__sample_weight=w)
    np.testing.assert_allclose(head.logits(g), ref.decision_function(g), atol=1e-6)
    means = np.stack([np.average(g[y == c], axis=0, weights=w[y == c]) for c in range(CLASSES)])
    np.testing.assert_allclose(head.table, ref.decision_function(means), atol=1e-6)


def test_adapting_logits_equals_reading_the_clips_less_the_class_conditional_offset():
    rng = np.random.default_rng(1)
    x, y, spk, _ = voices(10, 8, rng)
    head = fit_speaker_head(x, y, spk, c=1.0)
    g = centred(x, spk)
    means = np.stack([g[y == c].mean(0) for c in range(CLASSES)])
    batch = rng.normal(0, 2, (7, DIM))
    plain = rng.normal(0, 1, (7, CLASSES))
    offset = (batch - means[plain.argmax(1)]).mean(0)
    np.testing.assert_allclose(adapt(plain, head.logits(batch), head.table), head.logits(batch - offset), atol=1e-9)


def test_a_batch_of_one_emotion_is_not_taken_for_the_voice():
    """A new speaker far from the training voices, every clip one emotion: the plain head is
    misled by the offset, centring on the batch's mean erases the emotion, the class-conditional
    offset keeps it."""
    rng = np.random.default_rng(2)
    x, y, spk, class_means = voices(30, 10, rng, spread=1.0)
    plain = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    head = fit_speaker_head(x, y, spk, c=1.0)
    right = {"plain": 0, "batch mean": 0, "adapted": 0}
    trials = 0
    for t in range(40):
        offset = rng.normal(0, 1.0, DIM)
        c = t % CLASSES
        batch = offset + class_means[c] + rng.normal(0, 0.5, (12, DIM))
        batch[:2] = offset + class_means[(c + 1) % CLASSES] + rng.normal(0, 0.5, (2, DIM))  # 10 of 12 one emotion
        truth = np.array([(c + 1) % CLASSES] * 2 + [c] * 10)
        z = plain.decision_function(batch)
        u = head.logits(batch)
        right["plain"] += int((z.argmax(1) == truth).sum())
        right["batch mean"] += int(((u - u.mean(0) + head.bias).argmax(1) == truth).sum())
        right["adapted"] += int((adapt(z, u, head.table).argmax(1) == truth).sum())
        trials += len(truth)
    share = {k: v / trials for k, v in right.items()}
    assert share["adapted"] > share["plain"] + 0.03, share
    assert share["adapted"] > share["batch mean"] + 0.1, share


def test_centred_removes_each_speakers_mean():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [12.0, 2.0]])
    out = centred(x, np.array(["a", "a", "b", "b"]))
    np.testing.assert_allclose(out, [[-1, -1], [1, 1], [-1, -1], [1, 1]])

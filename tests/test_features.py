"""LogMel against librosa, and the per-utterance normalisation over valid frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from serkit.features import HOP_LENGTH, N_FFT, N_MELS, WIN_LENGTH, LogMel, mel_filterbank

librosa = pytest.importorskip("librosa")

SR = 16000
#: Largest allowed difference from librosa, in dB, for mel bins within 60 dB of the clip's peak.
DB_TOL = 1e-3
#: ... and for the faintest bins (60-80 dB below the peak, down to the top_db floor), where float32
#: rounding of the STFT and of the filter weights against the loud bins dominates.
DB_TOL_FAINT = 5e-3


def assert_close_db(got: np.ndarray, ref: np.ndarray) -> None:
    diff = np.abs(got - ref)
    strong = ref > ref.max() - 60.0
    assert strong.mean() > 0.1                      # the strict tolerance is not vacuous
    assert diff[strong].max() < DB_TOL, diff[strong].max()
    assert diff.max() < DB_TOL_FAINT, diff.max()


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=wave.astype(np.float64), sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
        n_mels=N_MELS, center=True, pad_mode="constant", power=2.0)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)


def noise(seconds=1.0, seed=0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def chirp(seconds=1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * (100 * t + 0.5 * (6000 - 100) / seconds * t ** 2))).astype(np.float32)


def ours(wave: np.ndarray, normalize="none", lengths=None) -> np.ndarray:
    m = LogMel(normalize=normalize)
    lens = None if lengths is None else torch.tensor(lengths)
    return m(torch.from_numpy(np.atleast_2d(wave)), lens).numpy()


def test_mel_filterbank_matches_librosa():
    ref = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS)
    fb = mel_filterbank(SR, N_FFT, N_MELS)
    assert fb.shape == ref.shape == (N_MELS, N_FFT // 2 + 1)
    np.testing.assert_allclose(fb, ref, rtol=1e-5, atol=1e-8)


def test_mel_filterbank_other_rate_and_size():
    ref = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=40, fmin=50.0, fmax=8000.0)
    np.testing.assert_allclose(mel_filterbank(22050, 1024, 40, 50.0, 8000.0), ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", [noise, chirp], ids=["noise", "chirp"])
def test_logmel_matches_librosa_db(make):
    wave = make()
    ref = librosa_logmel(wave)
    got = ours(wave)[0]
    assert got.shape == ref.shape == (N_MELS, len(wave) // HOP_LENGTH + 1)
    assert_close_db(got, ref)


def test_top_db_floor_applies_per_utterance():
    # a loud clip and a quiet clip in one batch: each is floored 80 dB below its own peak
    loud, quiet = chirp(), 1e-3 * noise(seed=1)
    db = ours(np.stack([loud, quiet]))
    for row, wave in zip(db, (loud, quiet)):
        assert row.min() >= row.max() - 80.0 - 1e-4
        assert_close_db(row, librosa_logmel(wave))


def test_frames_counts_valid_frames():
    m = LogMel()
    assert m.frames(torch.tensor([0, 159, 160, 16000])).tolist() == [1, 1, 2, 101]
    assert ours(noise(3.0)).shape[-1] == 301


def test_unknown_normalize_is_rejected():
    with pytest.raises(ValueError, match="normalize"):
        LogMel(normalize="global")


def test_utterance_normalization_is_standardised_over_valid_frames():
    wave = noise(1.0)
    out = ours(wave, normalize="utterance")[0]
    assert abs(out.mean()) < 1e-4
    assert abs(out.std() - 1.0) < 1e-3

    # same clip padded with 0.5 s of zeros, its length given: padding frames are exactly 0 and
    # the valid frames are standardised on their own
    n = len(wave)
    padded = np.concatenate([wave, np.zeros(SR // 2, np.float32)])
    out_p = ours(padded, normalize="utterance", lengths=[n])[0]
    valid = n // HOP_LENGTH + 1
    assert np.all(out_p[:, valid:] == 0.0)
    assert abs(out_p[:, :valid].mean()) < 1e-4
    assert abs(out_p[:, :valid].std() - 1.0) < 1e-3


def test_padding_does_not_change_valid_part():
    # The last valid frame's window reaches past the clip's end, so it sees the padding zeros either
    # way (center=True pads with zeros too); padded and unpadded clips give the same valid frames.
    a, b = noise(0.7, seed=2), chirp(1.2)
    alone = ours(a, normalize="utterance")[0]
    batch = np.zeros((2, len(b)), np.float32)
    batch[0, :len(a)], batch[1] = a, b
    together = ours(batch, normalize="utterance", lengths=[len(a), len(b)])
    valid = alone.shape[-1]
    np.testing.assert_allclose(together[0, :, :valid], alone, atol=1e-4)
    assert np.all(together[0, :, valid:] == 0.0)
    np.testing.assert_allclose(together[1], ours(b, normalize="utterance")[0], atol=1e-4)


def test_padding_changes_result_when_lengths_are_not_given():
    # the counterpart: without lengths the zeros count as signal (guards against a vacuous test above)
    a = noise(0.7, seed=2)
    padded = np.concatenate([a, np.zeros(SR // 2, np.float32)])
    alone = ours(a, normalize="utterance")[0]
    unmasked = ours(padded, normalize="utterance")[0]
    assert np.abs(unmasked[:, :alone.shape[-1]] - alone).max() > 0.1


@pytest.mark.parametrize("n_fft, pad_mode", [(400, "constant"), (512, "constant"), (400, "reflect")])
def test_conv_stft_power_equals_torch_stft(n_fft, pad_mode):
    """What exported front-ends compute instead of torch.stft: the same power spectrum."""
    from serkit.features import conv_stft_power, dft_basis

    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 7000)).astype(np.float32))
    window = torch.hann_window(WIN_LENGTH)
    spec = torch.stft(wave, n_fft, HOP_LENGTH, WIN_LENGTH, window, center=True, pad_mode=pad_mode,
                      return_complex=True)
    ref = spec.abs() ** 2
    ours = conv_stft_power(wave, dft_basis(window, n_fft), HOP_LENGTH, pad_mode)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.max()))


def test_log_mel_switches_to_the_convolution_only_while_exporting(monkeypatch):
    from serkit import features

    fe = LogMel(n_fft=400)
    wave = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 8000)).astype(np.float32))
    with torch.no_grad():
        eager = fe(wave)
        monkeypatch.setattr(features, "exporting", lambda: True)
        exported = fe(wave)
    torch.testing.assert_close(exported, eager, atol=1e-3, rtol=0)
    monkeypatch.setattr(features, "conv_stft_power", lambda *a: (_ for _ in ()).throw(AssertionError("used")))
    monkeypatch.setattr(features, "exporting", lambda: False)
    fe(wave)                                     # eager runs never touch the convolution path

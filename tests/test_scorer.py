"""The one scorer: the same answer in evaluation, predict, the API and the web app; speech first;
the Python API's conveniences. The shipped models (inside the package) are used as they are."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from serkit.audio import AudioError
from serkit.bundle import save_bundle
from serkit.evaluation import evaluate_logits
from serkit.inference import load_model
from serkit.manifest import Utterance
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from serkit.scorer import softmax
from serkit.web import create_app
from synth import EMOTIONS, SR, tone_clip

SHIPPED = load_model()          # the default model: encoder head on onnxruntime


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)).eval()
    return save_bundle(tmp_path / "bundle", model, list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 1.0},
                       temperature=1.7, scoring={"vad": "energy"})


def joined(pieces: list[np.ndarray], gap_s: float = 1.5) -> np.ndarray:
    quiet = np.zeros(int(gap_s * SR), np.float32)
    return np.concatenate([x for p in pieces for x in (quiet, p)] + [quiet]).astype(np.float32)


def test_evaluate_and_predict_give_identical_probabilities_on_multi_window_clips(bundle):
    p = load_model(bundle)
    rng = np.random.default_rng(0)
    clips = [joined([tone_clip(e, s, rng) for e, s in zip(EMOTIONS, lengths)])
             for lengths in ((0.6, 2.5, 0.8), (3.2, 0.7, 1.1), (2.2, 2.2, 2.2))]   # several windows each
    utts = [Utterance(corpus="c", speaker="s", emotion="angry", path=f"/x{i}.wav") for i in range(len(clips))]
    analyses = p.analyse(clips)
    assert all(len(a.segments) == 3 for a in analyses)                  # scored per speech segment
    logits, none = p.scorer.as_logits(analyses)
    report = evaluate_logits(utts, logits, p.labels, p.temperature)     # what `serkit evaluate` computes
    evaluated = softmax(logits / p.temperature)
    predicted = [p.predict_waveform(c) for c in clips]                  # what `serkit predict` answers
    for e, r in zip(evaluated, predicted):
        assert list(r.probabilities.values()) == pytest.approx(e.tolist(), abs=1e-4)
        assert r.emotion == p.labels[int(np.argmax(e))]
    assert report["n"] == 3 and not none.any()
    # the headline is the duration-weighted mean of the segments' calibrated probabilities
    a = analyses[0]
    d = np.array([e - s for s, e in a.segments], float)
    np.testing.assert_allclose(a.probabilities, (a.segment_probabilities * d[:, None]).sum(0) / d.sum(), atol=1e-6)
    for (s, e), q in zip(a.segments, a.segment_probabilities):        # each segment as a clip of its own
        np.testing.assert_allclose(q, p.predict_proba(clips[0][s:e]), atol=1e-5)


def non_speech() -> dict[str, np.ndarray]:
    t = np.arange(3 * SR) / SR
    rng = np.random.default_rng(0)
    clicks = np.zeros(2 * SR)
    for p in rng.integers(0, 2 * SR - 200, 20):    # keys typed: short decaying bursts
        clicks[p:p + 200] += 0.3 * rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
    return {"tone": (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
            "chord": (0.1 * sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330, 440))).astype(np.float32),
            "noise": (0.1 * rng.standard_normal(2 * SR)).astype(np.float32),
            "clicks": clicks.astype(np.float32),
            "silence": np.zeros(2 * SR, np.float32)}


def test_a_clip_silero_hears_no_speech_in_gets_a_second_look_padded_and_at_a_lower_threshold(monkeypatch):
    """The second look runs on the clip after a stretch of silence, and its segments are mapped
    back into the clip; the energy detector, and clips with speech, get no second look."""
    import serkit.vad as vad

    calls = []

    def detect(wave, sr, detector="auto", **options):
        calls.append((len(wave), options))
        return [] if len(calls) == 1 else [(2000, 9000), (len(wave) - 10000, len(wave))]   # in the padded clip

    monkeypatch.setattr(vad, "detect_speech", detect)
    pad = int(vad.SECOND_LOOK_PAD_S * SR)
    assert vad.clip_speech(np.zeros(2 * SR, np.float32), SR, "silero") == [(0, 9000 - pad), (30000 - pad, 2 * SR)]
    assert calls == [(2 * SR, {}), (2 * SR + pad, {"threshold": vad.SECOND_LOOK_THRESHOLD})]
    calls.clear()     # the benchmark's variants: other silence and threshold, the same mapping
    assert vad.clip_speech(np.zeros(2 * SR, np.float32), SR, "silero", pad_s=0.25, threshold=0.2) == [(0, 5000), (2 * SR - 10000, 2 * SR)]
    assert calls == [(2 * SR, {}), (2 * SR + SR // 4, {"threshold": 0.2})]
    calls.clear()
    assert vad.clip_speech(np.zeros(2 * SR, np.float32), SR, "energy") == [] and len(calls) == 1
    monkeypatch.setattr(vad, "detect_speech", lambda *a, **k: calls.append(k) or [(10, 20)])
    calls.clear()
    assert vad.clip_speech(np.zeros(2 * SR, np.float32), SR, "silero") == [(10, 20)] and calls == [{}]


@pytest.mark.parametrize("kind", ["tone", "chord", "noise", "clicks", "silence"])
def test_non_speech_gets_no_emotion_in_the_api_the_cli_and_the_web(kind, tmp_path):
    wave = non_speech()[kind]
    r = SHIPPED.predict_waveform(wave)
    assert r.emotion is None and r.probabilities == {} and r.reason.startswith("no speech detected")
    path = tmp_path / f"{kind}.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    out = subprocess.run([sys.executable, "-m", "serkit", "predict", str(path), "-f", "json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)[0]["emotion"] is None
    client = create_app({"SERKIT_MODELS": {"default": SHIPPED}}).test_client()
    body = client.post("/api/predict", data=path.read_bytes(), content_type="audio/wav").get_json()
    assert body["emotion"] is None and body["reason"].startswith("no speech detected")


def test_python_api_conveniences(bundle, tmp_path):
    p = load_model(bundle)
    rng = np.random.default_rng(1)
    wave = tone_clip("angry", 0.8, rng)
    one = p.predict_proba(wave)                                        # one 1-D array
    assert one.shape == (3,) and one == pytest.approx(p.predict_proba([wave])[0])
    at_44k = np.interp(np.arange(int(0.8 * 44100)) / 44100, np.arange(len(wave)) / SR, wave).astype(np.float32)
    same = p.predict_waveform(at_44k, sample_rate=44100)                # resampled, not read as 16 kHz
    assert same.probabilities == pytest.approx(p.predict_waveform(wave).probabilities, abs=0.05)
    assert p.predict_waveform(at_44k).probabilities != same.probabilities
    with pytest.raises(AudioError, match="file not found"):
        p.predict_file(tmp_path / "typo.wav")                           # one file: an error is raised
    assert p.predict_files([tmp_path / "typo.wav"])[0].error            # a batch: a row with the error
    assert "cnn_lstm on torch" in repr(p) and "angry, happy, sad" in repr(p)
    assert json.loads(p.predict_waveform(wave).to_json())["emotion"] in EMOTIONS
    assert "default" in repr(SHIPPED) and "onnx" in repr(SHIPPED)


def test_a_model_option_typo_is_one_error_before_anything_is_written(tmp_path, capsys):
    from serkit.cli import main
    from synth import write_tone_corpus

    corpus = write_tone_corpus(tmp_path / "c", speakers=4, per_emotion=1)
    rc = main(["train", str(corpus.manifest), "--out", str(tmp_path / "run"), "--model-options", '{"lstm_hiden": 8}'])
    err = capsys.readouterr().err
    assert rc == 2 and "'lstm_hiden' is not a cnn_lstm setting" in err and "lstm_hidden" in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_every_waveform_entry_point_refuses_absurd_amplitudes(bundle):
    """The amplitude check lives in the scorer, so the Python API refuses what load_audio and the
    web app refuse (1e18 once overflowed a model's features into NaN)."""
    from serkit.audio import OutOfRangeAudio

    p = load_model(bundle)
    loud = tone_clip("angry", 0.8, np.random.default_rng(2)) * np.float32(1e18)
    for call in (p.predict_waveform, p.predict_proba, lambda w: p.analyse([w])):
        with pytest.raises(OutOfRangeAudio):
            call(loud)

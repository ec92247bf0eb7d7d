"""Never the wrong model, never a wrong number: what serkit answers when the input or the model
is not what it should be.

- a run trained into an old run folder (``--force``) is the new run, never the old one's weights;
- NaN or infinity never leaves serkit (CLI, JSONL, web), and a clip the model cannot score fails
  alone, not the whole batch; float audio far outside [-1, 1] is a clear error;
- ``prepare`` follows linked folders (a loop ends), and keeps each file once across overlapping
  roots; CSV rows that disagree about one file are counted, not collapsed;
- batch jobs know ``../x.wav``, ``./../x.wav`` and ``/abs/x.wav`` are one file, also on resume;
- a bundle's labels must match its outputs and its temperature be a positive number;
  a NaN duration never reaches a JSON file;
- a fixed-segment timeline never scores a sliver of a few samples; too little audio or digital
  silence is answered with no emotion in the CLI, the Python API, the web and timelines alike.
"""
from __future__ import annotations

import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import serkit.training as training
from serkit.audio import OutOfRangeAudio
from serkit.batch import run_batch
from serkit.bundle import BundleError, read_config, save_bundle
from serkit.cli import main
from serkit.inference import Predictor, load_model
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from serkit.prepare import prepare
from serkit.safety import to_json, write_json
from synth import EMOTIONS, SR, tiny_config, tone_clip, write_clip, write_ravdess_tree, write_tone_corpus

AUDIO = {"sample_rate": SR, "clip_seconds": 0.5}
ENERGY = {"vad": "energy"}          # tones are speech to the energy detector (not to silero)


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def tiny_model(seed: int = 0, classes: int = 3) -> CNNLSTM:
    torch.manual_seed(seed)
    return CNNLSTM(CNNLSTMConfig(n_classes=classes, channels=[4, 8, 8], lstm_hidden=16)).eval()


@pytest.fixture
def bundle(tmp_path):
    return save_bundle(tmp_path / "bundle", tiny_model(), list(EMOTIONS), AUDIO, scoring=ENERGY)


def tones(folder: Path, n: int = 3, seconds: float = 1.0) -> list[Path]:
    rng = np.random.default_rng(0)
    return [write_clip(folder / f"t{i}.wav", tone_clip(EMOTIONS[i % 3], seconds, rng)) for i in range(n)]


def huge(path: Path) -> Path:
    """A float WAV whose samples reach 1e18."""
    t = np.arange(SR) / SR
    sf.write(str(path), (1e18 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, subtype="FLOAT")
    return path


# ------------------------------------------------------------------------- the right model

def test_training_over_an_old_run_starts_from_scratch(tmp_path):
    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=3, seed=2)
    run = tmp_path / "run"
    training.train(corpus.manifest, run, tiny_config(epochs=4, seed=0))
    a = load_model(run / "bundle")
    a_weights = {k: v.clone() for k, v in a.model.state_dict().items()}

    # run B: other labels, another seed, a learning rate of 0 (its weights stay its own initial
    # ones, so they can only equal A's if A's best checkpoint was loaded into it)
    training.train(corpus.manifest, run, tiny_config(epochs=2, seed=1, lr=0.0, emotions=["angry", "sad"]),
                   force=True)
    b = load_model(run / "bundle")
    assert b.labels == ["angry", "sad"]
    config = json.loads((run / "bundle" / "config.json").read_text())
    assert config["training"]["config"]["seed"] == 1 and 0 <= config["training"]["best_epoch"] < 2
    assert json.loads((run / "checkpoints" / "best.json").read_text())["epoch"] < 2
    head_a, head_b = a_weights["head.weight"], b.model.state_dict()["head.weight"]
    assert head_a.shape != head_b.shape or not torch.equal(head_a, head_b)
    assert not torch.equal(a_weights["lstm.weight_hh_l0"], b.model.state_dict()["lstm.weight_hh_l0"])


# ----------------------------------------------------------------------- never a NaN answer

def test_float_audio_far_out_of_range_is_a_clear_error_everywhere(bundle, tmp_path, capsys):
    ok = tones(tmp_path / "ok", 2)
    bad = huge(tmp_path / "huge.wav")
    with pytest.raises(OutOfRangeAudio, match="far outside"):
        load_model(bundle).predict_file(bad)

    assert main(["predict", "--model", str(bundle), str(ok[0]), str(bad), str(ok[1]), "-f", "json"]) == 1
    rows = strict_json(capsys.readouterr().out)
    assert [r["emotion"] is not None for r in rows] == [True, False, True]
    assert "far outside [-1, 1]" in rows[1]["error"]

    out = tmp_path / "rows.jsonl"
    assert main(["predict", "--model", str(bundle), str(ok[0]), str(bad), "--output", str(out), "--no-progress"]) == 1
    rows = [strict_json(line) for line in out.read_text().splitlines()]
    assert sorted(bool(r["error"]) for r in rows) == [False, True]

    assert main(["predict", "--timeline", str(bad), "--model", str(bundle), "--vad", "none", "--no-progress"]) == 1
    assert "far outside" in capsys.readouterr().err

    from serkit.web import create_app
    client = create_app({"SERKIT_MODELS": {"m": bundle}, "TESTING": True}).test_client()
    r = client.post("/api/predict", data={"file": (io.BytesIO(bad.read_bytes()), "x.wav")},
                    content_type="multipart/form-data")
    assert r.status_code == 422 and strict_json(r.get_data(as_text=True))["error"] == "out_of_range"


class NaNWhenLoud:
    """A runtime that gives finite logits, except NaN for windows louder than 0.9 (a model that
    breaks on some inputs)."""

    name = "test"

    def logits(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = np.tile(np.array([0.0, 1.0, 2.0], np.float32), (len(windows), 1))
        out[np.abs(windows).max(axis=1) > 0.9] = np.nan
        return out


def test_a_clip_the_model_cannot_score_fails_alone(tmp_path):
    predictor = Predictor(NaNWhenLoud(), {"labels": list(EMOTIONS), "audio": AUDIO, "scoring": ENERGY})
    t = np.arange(SR) / SR
    files = [write_clip(tmp_path / f"{name}.wav", (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
             for name, amp in (("quiet", 0.3), ("loud", 0.95), ("also_quiet", 0.4))]
    results = predictor.predict_files(files)
    assert [r.emotion for r in results] == ["sad", None, "sad"]
    assert "not finite" in results[1].error

    out = tmp_path / "out.csv"
    summary = run_batch(predictor, [str(f) for f in files], out, progress=False)
    assert (summary.scored, summary.failed) == (2, 1)
    assert "nan" not in out.read_text().lower()


def test_the_web_never_sends_nan():
    from serkit.web import create_app

    predictor = Predictor(NaNWhenLoud(), {"labels": list(EMOTIONS), "audio": {"sample_rate": SR, "clip_seconds": 3.0},
                                          "scoring": ENERGY})
    app = create_app({"SERKIT_MODELS": {"breaks": predictor}, "TESTING": True})
    buf = io.BytesIO()
    t = np.arange(SR) / SR
    sf.write(buf, (0.95 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, format="WAV", subtype="FLOAT")
    r = app.test_client().post("/api/predict", data={"file": (io.BytesIO(buf.getvalue()), "x.wav")},
                               content_type="multipart/form-data")
    assert r.status_code == 500 and strict_json(r.get_data(as_text=True))["error"] == "non_finite_scores"
    with pytest.raises(ValueError):
        app.json.dumps({"p": float("nan")})        # and any NaN that slipped through is a 500, not "NaN"


# --------------------------------------------------------------------------------- prepare

def test_prepare_follows_linked_folders_and_a_link_loop_ends(tmp_path):
    clips = write_ravdess_tree(tmp_path / "store", actors=3, seconds=0.3)
    root = tmp_path / "corpus" / "ravdess"
    root.mkdir(parents=True)
    for actor in ("Actor_01", "Actor_02", "Actor_03"):
        (root / actor).symlink_to(tmp_path / "store" / actor, target_is_directory=True)
    (tmp_path / "store" / "Actor_01" / "back").symlink_to(root, target_is_directory=True)   # a loop
    result = prepare([tmp_path / "corpus"])
    assert sorted(u.path for u in result.utterances) == sorted(p.resolve() for p in clips)
    assert len(result.skipped) == 0


def test_overlapping_roots_keep_each_file_once(tmp_path):
    clips = write_ravdess_tree(tmp_path / "tree" / "ravdess", actors=4, seconds=0.3)
    (tmp_path / "tree" / "ravdess" / "Actor_01" / "notes.txt").write_text("a stray")
    (tmp_path / "tree" / "ravdess" / "Actor_02" / "empty.wav").write_bytes(b"")
    result = prepare([tmp_path / "tree", tmp_path / "tree" / "ravdess"], tmp_path / "m.csv")
    paths = [u.path for u in result.utterances]
    assert len(paths) == len(set(paths)) == len(clips)
    # the strays are counted once, as one root alone counts them
    alone = prepare([tmp_path / "tree"]).skipped.counts()
    assert alone and result.skipped.counts() == alone + Counter({("ravdess", "repeated (the same file again)"): len(clips)})
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert len(rows) == 1 + len(clips)


def test_csv_rows_that_disagree_about_a_file_are_counted_not_collapsed(tmp_path):
    a, b, c = tones(tmp_path / "wav", 3, seconds=0.5)
    listing = tmp_path / "list.csv"
    listing.write_text("path,emotion,speaker\n"
                       f"{a},angry,s1\n{a},angry,s1\n"          # the same row twice: kept once
                       f"{b},sad,s1\n{b},happy,s1\n"            # two labels for one file: neither
                       f"{c},sad,s2\n")
    result = prepare([listing])
    assert sorted((u.path.name, u.emotion) for u in result.utterances) == [("t0.wav", "angry"), ("t2.wav", "sad")]
    assert result.skipped.counts() == {("csv", "repeated (the same file again)"): 1,
                                       ("csv", "conflicting duplicates (one file, different labels)"): 2}


# ------------------------------------------------------------------------------ batch paths

def test_every_spelling_of_a_path_is_one_file_also_on_resume(bundle, tmp_path, monkeypatch):
    clip = tones(tmp_path, 1)[0]                               # tmp_path/t0.wav
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    predictor = load_model(bundle)
    out = tmp_path / "out.csv"
    summary = run_batch(predictor, ["../t0.wav", "./../t0.wav", str(clip)], out, progress=False)
    assert (summary.total, summary.scored, summary.duplicates) == (1, 1, 2)
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("../t0.wav,")
    again = run_batch(predictor, [str(clip)], out, resume=True, progress=False)
    assert (again.skipped, again.scored) == (1, 0)
    assert out.read_text().splitlines() == rows


# ------------------------------------------------------------------------------- bundles

def edit_config(folder: Path, **changes) -> Path:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))     # json.dumps writes NaN as NaN
    return folder


@pytest.mark.parametrize("labels", [["angry", "happy"], ["angry", "happy", "sad", "fearful"],
                                    ["angry", "angry", "sad"]])
def test_labels_must_name_every_output(bundle, labels, capsys):
    edit_config(bundle, labels=labels)
    with pytest.raises(BundleError, match="labels"):
        load_model(bundle)
    assert main(["predict", "--model", str(bundle), "x.wav"]) == 2
    assert "labels" in capsys.readouterr().err


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "1.0", True])
def test_temperature_must_be_a_positive_number(bundle, temperature):
    edit_config(bundle, temperature=temperature)
    with pytest.raises(BundleError, match="temperature"):
        read_config(bundle)


def test_a_bundle_is_never_written_with_nan(tmp_path):
    with pytest.raises(BundleError, match="temperature"):
        save_bundle(tmp_path / "b", tiny_model(), list(EMOTIONS), AUDIO, float("nan"))
    with pytest.raises(ValueError, match=r"training\.data\.hours"):
        save_bundle(tmp_path / "b", tiny_model(), list(EMOTIONS), AUDIO, 1.0,
                    training={"data": {"hours": float("nan")}})
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match=r"report\.json: .*at a\[1\]"):
        write_json(tmp_path / "report.json", {"a": [1.0, math.inf]})
    assert not (tmp_path / "report.json").exists()
    assert to_json({"a": 1.0}) == '{"a": 1.0}'


def test_a_manifest_with_a_nan_duration_is_refused_before_training(tmp_path):
    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2, seed=1)
    lines = corpus.manifest.read_text().splitlines()
    head = lines[0].split(",")
    row = lines[3].split(",")
    row[head.index("Duration")] = "nan"
    lines[3] = ",".join(row)
    corpus.manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"manifest.csv:4: Duration 'nan'"):
        training.train(corpus.manifest, tmp_path / "run", tiny_config(epochs=1))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ too little to score

def test_fixed_segments_never_score_a_sliver(bundle, tmp_path):
    predictor = load_model(bundle)
    wave = np.concatenate([tone_clip("happy", 1.0), tone_clip("sad", 1.0), tone_clip("sad", 1.0)[:1]])
    tl = predictor.predict_timeline(wave, vad="none", segment_s=1.0)
    assert [(s.start, s.end) for s in tl.segments] == [(0.0, 1.0), (1.0, 2.0)]
    assert tl.duration_s == pytest.approx(2.0 + 1 / SR)
    assert min(s.end - s.start for s in tl.segments) >= 0.25


def test_fixed_pieces_of_digital_silence_are_not_answered(bundle):
    """With fixed pieces (vad "none") a piece of digital silence inside a recording gets no
    emotion, as a clip of it would not: the timeline and an upload's units both leave it out."""
    predictor = load_model(bundle)
    hush = np.full(SR, 1e-4, np.float32)                                     # -80 dBFS: silence
    wave = np.concatenate([tone_clip("happy", 1.0), hush, tone_clip("sad", 1.0), hush[:SR // 2]])
    tl = predictor.predict_timeline(wave, vad="none", segment_s=1.0)
    assert [(s.start, s.end) for s in tl.segments] == [(0.0, 1.0), (2.0, 3.0)]   # nor the silent last half-second
    w = predictor.spec.window_samples
    clip = np.concatenate([tone_clip("angry", w / SR)[:w], np.zeros(w, np.float32), tone_clip("sad", w / SR)[:w]])
    assert predictor.scorer.units(clip, "none") == ([(0, w), (2 * w, 3 * w)], None)   # the silent window left out
    a = predictor.scorer.analyse([clip], vad="none")[0]
    assert a.segments == [(0, w), (2 * w, 3 * w)] and a.probabilities is not None
    assert predictor.scorer.units(hush, "none")[1].startswith("no speech")


def test_soft_speech_after_silence_is_not_silence(bundle):
    """Silence is digital silence, no sample above -60 dBFS: a soft sentence after a second of
    silence (five RAVDESS clips of the pool, peaks -38 to -44 dBFS) has a whole-clip RMS level
    under -60 dBFS and was answered "silent"."""
    from serkit.scorer import SILENCE_DBFS, too_little

    predictor = load_model(bundle)
    t = np.arange(int(1.5 * SR)) / SR
    soft = 10 ** (-40 / 20) * np.sin(2 * np.pi * 200 * t) * ((t % 0.5) < 0.01)     # 10 ms bursts peaking at -40 dBFS
    wave = np.concatenate([np.zeros(SR), soft]).astype(np.float32)
    assert 10 * np.log10(np.mean(wave.astype(np.float64) ** 2)) < SILENCE_DBFS                 # an RMS under it
    assert too_little(len(wave), float(np.abs(wave).max()), SR) is None
    units, reason = predictor.scorer.units(wave, "none")                 # the silent second alone left out
    assert reason is None and units[0][0] == SR and units[-1][1] == len(wave)
    assert "silent" not in (predictor.predict_waveform(wave).reason or "")
    tl = predictor.predict_timeline(wave, vad="none", segment_s=1.0)
    assert tl.reason is None and [(s.start, s.end) for s in tl.segments] == [(1.0, 2.0), (2.0, 2.5)]
    assert too_little(SR, 10 ** (SILENCE_DBFS / 20), SR).startswith("no speech detected: the clip is silent")


@pytest.mark.parametrize("wave", [np.full(1, 0.5, np.float32), np.zeros(SR * 2, np.float32)],
                         ids=["one sample", "digital silence"])
def test_one_rule_for_too_little_audio(bundle, tmp_path, capsys, wave):
    predictor = load_model(bundle)
    path = write_clip(tmp_path / "x.wav", wave)
    assert predictor.predict_file(path).emotion is None                      # Python API
    assert predictor.predict_waveform(wave).reason.startswith("no speech")
    tl = predictor.predict_timeline(path, vad="none")                        # timelines
    assert tl.segments == [] and tl.reason.startswith("no speech")
    assert main(["predict", "--model", str(bundle), str(path), "-f", "json"]) == 0   # CLI
    (row,) = strict_json(capsys.readouterr().out)
    assert row["emotion"] is None and row["reason"].startswith("no speech")
    assert main(["predict", "--timeline", str(path), "--model", str(bundle), "--vad", "none", "-f", "json",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert strict_json(captured.out)["segments"] == [] and "no speech" in captured.err

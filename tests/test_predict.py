"""Predictor (windows, files, errors) and the ``serkit predict`` command."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from serkit.bundle import save_bundle
from serkit.cli import main
from serkit.batch import model_id
from serkit.inference import load_model, softmax, window_starts
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from synth import EMOTIONS, SR, tone_clip, write_clip, write_corrupt

CLIP_SECONDS = 0.5
WINDOW = int(CLIP_SECONDS * SR)


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)).eval()
    return save_bundle(tmp_path / "bundle", model, list(EMOTIONS),
                       {"sample_rate": SR, "clip_seconds": CLIP_SECONDS}, temperature=1.5)


@pytest.fixture
def audio_dir(tmp_path):
    """Three good clips (one longer than the window) in a folder tree, plus a stray text file."""
    rng = np.random.default_rng(0)
    d = tmp_path / "audio"
    files = [write_clip(d / "a_angry.wav", tone_clip("angry", 0.4, rng)),
             write_clip(d / "b_happy.wav", tone_clip("happy", 1.3, rng)),
             write_clip(d / "sub" / "c_sad.wav", tone_clip("sad", 0.5, rng))]
    (d / "notes.txt").write_text("not audio")
    return d, files


# ------------------------------------------------------------------------------------ windows

@pytest.mark.parametrize("n", [1, WINDOW - 1, WINDOW, WINDOW + 1, int(1.3 * SR), 3 * WINDOW, 7 * WINDOW + 123])
def test_window_starts_cover_the_clip(n):
    hop = WINDOW // 2
    starts = window_starts(n, WINDOW, hop)
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    if n <= WINDOW:
        assert starts == [0]
        return
    assert starts[-1] + WINDOW == n                                  # last window ends at the end
    assert all(s + WINDOW <= n for s in starts)                      # no window runs past the end
    assert all(b - a <= hop for a, b in zip(starts, starts[1:]))     # no gaps, >= 50 % overlap
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s:s + WINDOW] = True
    assert covered.all()


def test_long_clip_averages_its_windows(bundle):
    predictor = load_model(bundle)
    wave = tone_clip("happy", 1.3, np.random.default_rng(1))
    starts = window_starts(len(wave), WINDOW, WINDOW // 2)
    assert starts == [0, 4000, 8000, 12000, 12800]                   # the last one ends at 20800

    windows = np.stack([wave[s:s + WINDOW] for s in starts])
    per_window = predictor.logits_windows(windows, np.full(len(starts), WINDOW))
    expected = softmax(per_window / predictor.temperature).mean(0)
    np.testing.assert_allclose(predictor.predict_proba([wave])[0], expected, atol=1e-6)
    np.testing.assert_allclose(predictor.logits([wave])[0], per_window.mean(0), atol=1e-5)
    # the windows disagree, so the average is not just one of them
    assert np.abs(per_window - per_window[0]).max() > 1e-4


def test_short_clip_is_padded_and_masked(bundle):
    predictor = load_model(bundle)
    wave = tone_clip("sad", 0.3, np.random.default_rng(2))
    padded = np.pad(wave, (0, WINDOW - len(wave)))[None]
    expected = softmax(predictor.logits_windows(padded, np.array([len(wave)])) / predictor.temperature)[0]
    np.testing.assert_allclose(predictor.predict_proba([wave])[0], expected, atol=1e-6)


def test_batch_results_match_single_results(bundle):
    predictor = load_model(bundle)
    rng = np.random.default_rng(3)
    waves = [tone_clip(e, s, rng) for e, s in (("angry", 0.3), ("happy", 1.3), ("sad", 0.5), ("sad", 0.9))]
    together = predictor.predict_proba(waves, batch_size=3)         # windows split over batches
    for w, row in zip(waves, together):
        np.testing.assert_allclose(predictor.predict_proba([w])[0], row, atol=1e-5)
    assert predictor.predict_proba([]).shape == (0, 3)


def test_predict_waveform(bundle):
    predictor = load_model(bundle)
    wave = tone_clip("angry", 0.8, np.random.default_rng(4))
    p = predictor.predict_waveform(wave, "x")
    assert p.file == "x" and p.error is None
    assert p.duration_s == pytest.approx(0.8)
    assert list(p.probabilities) == list(EMOTIONS)
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert p.emotion == max(p.probabilities, key=p.probabilities.get)
    assert p.confidence == p.probabilities[p.emotion]


# -------------------------------------------------------------------------------------- files

def test_predict_files_reports_bad_files_and_scores_the_rest(bundle, audio_dir, tmp_path):
    predictor = load_model(bundle)
    _, files = audio_dir
    corrupt = write_corrupt(tmp_path / "broken.wav")
    missing = tmp_path / "missing.wav"
    paths = [files[0], corrupt, files[1], missing, files[2]]
    results = predictor.predict_files(paths, batch_size=2)
    assert [r.file for r in results] == [str(p) for p in paths]      # one row per path, in order
    bad = {r.file: r.error for r in results if r.error}
    assert set(bad) == {str(corrupt), str(missing)}
    assert "cannot decode" in bad[str(corrupt)]
    assert "not found" in bad[str(missing)]
    for r in (results[1], results[3]):
        assert r.emotion is None and r.probabilities == {}
    good = [results[0], results[2], results[4]]
    for r, path in zip(good, files):
        assert r.error is None and r.emotion in EMOTIONS
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        # same numbers as scoring that file alone
        alone = predictor.predict_file(path)
        assert alone.probabilities == pytest.approx(r.probabilities, abs=1e-5)
    assert results[2].duration_s == pytest.approx(1.3)


# ---------------------------------------------------------------------------------------- CLI

def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_predict_json(bundle, audio_dir, capsys):
    d, files = audio_dir
    code, out, err = run_cli(capsys, "predict", "--model", str(bundle), "--format", "json", *map(str, files))
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and [r["file"] for r in rows] == [str(f) for f in files]
    for r in rows:
        assert {"file", "emotion", "probabilities"} <= set(r)
        assert set(r["probabilities"]) == set(EMOTIONS)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["emotion"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["error"] is None
    # the same numbers as the Python API
    api = load_model(bundle).predict_files(files)
    for r, p in zip(rows, api):
        assert r["probabilities"] == pytest.approx(p.probabilities, abs=5e-5)   # JSON carries 4 decimals


def test_cli_predict_csv(bundle, audio_dir, capsys):
    _, files = audio_dir
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "csv", *map(str, files))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["file", "emotion", "confidence", "uncertain", *EMOTIONS, "duration_s", "speech_s",
                            "reason", "error", "model"]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    for r in rows:
        probs = [float(r[e]) for e in EMOTIONS]
        assert sum(probs) == pytest.approx(1.0, abs=2e-3)
        assert r["emotion"] == EMOTIONS[int(np.argmax(probs))]
        assert float(r["confidence"]) == pytest.approx(max(probs), abs=1e-4)
        assert r["error"] == ""
    assert float(rows[1]["duration_s"]) == pytest.approx(1.3)
    assert {r["model"] for r in rows} == {model_id(load_model(bundle))}
    printed = files[0].parent.parent / "printed.csv"      # printed, then continued as a batch job
    printed.write_text(out)
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "-o", str(printed), "--resume", "--no-progress",
                           *map(str, files), str(write_clip(files[0].parent / "d_angry.wav", tone_clip("angry", 0.4))))
    assert code == 0 and "3 already done" in err and printed.read_bytes().startswith(out.encode())
    assert len(list(csv.DictReader(open(printed)))) == 4


def test_cli_predict_table(bundle, audio_dir, capsys):
    _, files = audio_dir
    code, out, err = run_cli(capsys, "predict", "--model", str(bundle), *map(str, files))
    assert code == 0, err
    assert f"Predictions ({bundle.parent.name})" in out      # <run>/bundle is called by its run
    api = load_model(bundle).predict_files(files)
    for p in api:
        assert p.emotion in out
    assert sum(out.count(e) for e in EMOTIONS) >= len(files)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_cli_predict_exit_code_1_when_a_file_fails(bundle, audio_dir, tmp_path, capsys, fmt):
    _, files = audio_dir
    corrupt = write_corrupt(tmp_path / "broken.wav")
    missing = tmp_path / "missing.wav"
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", fmt,
                             str(files[0]), str(corrupt), str(missing))
    assert code == 1
    assert "2 of 3 file(s) could not be scored" in err
    if fmt == "json":
        rows = json.loads(out)
        assert rows[0]["error"] is None and rows[0]["emotion"] in EMOTIONS
        assert "cannot decode" in rows[1]["error"] and rows[1]["emotion"] is None
        assert "not found" in rows[2]["error"]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows[0]["error"] == "" and rows[0]["emotion"] in EMOTIONS
        assert rows[1]["error"] and rows[1]["emotion"] == "" and rows[1][EMOTIONS[0]] == ""
        assert "not found" in rows[2]["error"]
    else:
        assert "error" in out


def test_cli_predict_folder_expansion(bundle, audio_dir, capsys):
    d, files = audio_dir
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json", str(d))
    assert code == 0, err
    got = [r["file"] for r in json.loads(out)]
    assert sorted(got) == sorted(str(f) for f in files)              # recursive, notes.txt skipped
    assert not any(g.endswith(".txt") for g in got)


def test_cli_predict_answers_a_file_named_twice_once(bundle, audio_dir, capsys, monkeypatch):
    d, files = audio_dir
    monkeypatch.chdir(files[0].parent)
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json",
                             str(files[0]), f"./{files[0].name}", str(d))
    assert code == 0, err
    got = [r["file"] for r in json.loads(out)]
    assert got[0] == str(files[0]) and sorted(got) == sorted(str(f) for f in files)   # each once
    assert "2 repeated path(s) left out" in err


def test_cli_predict_finds_opus_files_in_a_folder(bundle, tmp_path, capsys):
    t = np.arange(48000) / 48000
    sf.write(tmp_path / "talk.opus", (0.1 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 48000,
             format="OGG", subtype="OPUS")
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json", str(tmp_path))
    assert code == 0, err
    assert [(r["file"], r["error"]) for r in json.loads(out)] == [(str(tmp_path / "talk.opus"), None)]


def test_cli_predict_glob_expansion(bundle, audio_dir, capsys):
    d, files = audio_dir
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json", str(d / "*.wav"))
    assert code == 0, err
    assert [r["file"] for r in json.loads(out)] == [str(files[0]), str(files[1])]   # sorted, not sub/
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json", str(d / "**" / "*.wav"))
    assert code == 0, err
    assert sorted(r["file"] for r in json.loads(out)) == sorted(str(f) for f in files)


def test_cli_predict_glob_without_match_is_an_error(bundle, tmp_path, capsys):
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), str(tmp_path / "*.flac"))
    assert code == 2
    assert "no file matches" in err


def test_cli_predict_empty_folder_is_an_error(bundle, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(capsys, "predict", "-m", str(bundle), str(tmp_path / "empty"))
    assert code == 2
    assert "no audio files found" in err


def test_cli_predict_bad_bundle_is_an_error(tmp_path, audio_dir, capsys):
    _, files = audio_dir
    (tmp_path / "notabundle").mkdir()
    code, out, err = run_cli(capsys, "predict", "-m", str(tmp_path / "notabundle"), str(files[0]))
    assert code == 2
    assert "not a serkit bundle" in err


# ------------------------------------------------------------------- what a person sees

def narrow_console(monkeypatch, width: int = 80):
    """The CLI's console as a terminal of ``width`` columns (writing to the captured stdout)."""
    from rich.console import Console

    import serkit.cli as cli
    monkeypatch.setattr(cli.common, "console", Console(width=width, color_system=None))


def test_cli_predict_table_shows_names_relative_to_their_folder_at_80_columns(bundle, tmp_path, capsys,
                                                                             monkeypatch):
    rng = np.random.default_rng(1)
    deep = tmp_path / "a-rather-long-folder-name" / "corpora" / "ravdess"
    files = [write_clip(deep / f"Actor_0{i}" / f"03-01-05-01-01-01-0{i}.wav", tone_clip("angry", 0.4, rng))
             for i in (1, 2, 3)]
    narrow_console(monkeypatch)
    code, out, err = run_cli(capsys, "predict", "--model", str(bundle), *map(str, files))
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines[1:])) <= 80                               # the table
    assert lines[0] == f"files in {deep}:"                              # the shared folder, once, whole
    rows = [ln for ln in lines if ".wav" in ln]
    assert len(rows) == 3                                               # one line per file, nothing wrapped
    for i, row in zip((1, 2, 3), rows):
        assert row.startswith(f"Actor_0{i}/03-01-05-01-01-01-0{i}.wav")   # whole, not cut at the end


def test_cli_predict_table_cuts_long_names_at_the_start(bundle, tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(2)
    files = [write_clip(tmp_path / ("x" * 60) / f"clip-{name}.wav", tone_clip("sad", 0.4, rng))
             for name in ("one", "two")]
    missing = "/nonexistent-folder/missing.wav"       # no shared folder but /
    narrow_console(monkeypatch)
    code, out, err = run_cli(capsys, "predict", "--model", str(bundle), *map(str, files), missing)
    assert code == 1
    assert max(map(len, out.splitlines())) <= 80
    rows = [ln for ln in out.splitlines() if "clip-" in ln]
    assert [r.split()[0][-12:] for r in rows] == ["clip-one.wav", "clip-two.wav"]
    assert all(r.startswith("…") for r in rows)


def test_cli_predict_table_when_every_file_fails(bundle, tmp_path, capsys):
    code, out, err = run_cli(capsys, "predict", "--model", str(bundle), str(tmp_path / "a.wav"),
                             str(tmp_path / "b.wav"))
    assert code == 1 and "2 of 2 file(s) could not be scored" in err
    assert out.count("error") == 2 and out.count("file not found") == 2


def test_relative_names_and_cut_start():
    from serkit.display import cut_start, relative_names

    assert relative_names(["/d/a/x.wav", "/d/b/y.wav"]) == ("/d", ["a/x.wav", "b/y.wav"])
    assert relative_names(["x.wav", "y.wav"]) == ("", ["x.wav", "y.wav"])
    assert relative_names(["/a/x.wav", "b/y.wav"]) == ("", ["/a/x.wav", "b/y.wav"])
    assert relative_names(["/d/x.wav"]) == ("/d", ["x.wav"])
    assert cut_start("abcdefgh", 5) == "…efgh" and cut_start("abc", 5) == "abc"


def test_cli_predict_numbers_follow_one_convention(bundle, audio_dir, capsys):
    _, files = audio_dir
    code, out, _ = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json", *map(str, files))
    assert code == 0
    for r in json.loads(out):
        for v in [*r["probabilities"].values(), r["confidence"]]:
            assert v == round(v, 4)
        assert r["duration_s"] == round(r["duration_s"], 3)
    assert json.loads(out)[1]["duration_s"] == 1.3
    code, out, _ = run_cli(capsys, "predict", "-m", str(bundle), "-f", "csv", *map(str, files))
    row = list(csv.DictReader(io.StringIO(out)))[1]
    assert row["duration_s"] == "1.300" and len(row["confidence"].split(".")[1]) == 4


def test_cli_default_model_is_called_default(audio_dir, capsys):
    _, files = audio_dir
    code, out, err = run_cli(capsys, "predict", str(files[0]))
    assert code == 0, err
    assert "Predictions (default)" in out


def test_cli_predict_flags_that_need_another_say_why(bundle, audio_dir, tmp_path, capsys):
    _, files = audio_dir
    png = tmp_path / "t.png"
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "--plot", str(png), str(files[0]))
    assert code == 2 and "--plot" in err and "add --timeline" in err and not png.exists()
    for extra in ([], ["--timeline"]):
        code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "-f", "json", "-o", str(tmp_path / "p.csv"),
                               *extra, str(files[0]))
        assert code == 2 and "--format json" in err and "suffix" in err and not (tmp_path / "p.csv").exists()
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "--segment-seconds", "2", str(files[0]))
    assert code == 2 and "--segment-seconds" in err and "add --timeline" in err
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "--timeline", "--segment-seconds", "2", str(files[0]))
    assert code == 2 and "--segment-seconds" in err and "add --vad none" in err
    from serkit.scorer import MIN_SECONDS       # a shorter piece could only be answered "no speech"
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "-m", str(bundle), "--timeline", "--vad", "none", "--segment-seconds",
              str(MIN_SECONDS * 0.9), str(files[0])])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--segment-seconds" in err and f">= {MIN_SECONDS}" in err
    out = tmp_path / "preds.json"
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "-o", str(out), str(files[0]))
    assert code == 2 and ".jsonl" in err and "--format json" in err and not out.exists()
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "-o", str(tmp_path / "p.jsonl"), "--no-progress",
                           str(files[0]))
    assert code == 0
    row = json.loads((tmp_path / "p.jsonl").read_text())
    assert all(v == round(v, 4) for v in row["probabilities"].values())


def test_cli_predict_vad_answers_files_as_the_web_api_does(bundle, tmp_path, capsys):
    """--vad/--max-segment without --timeline: each file is answered in that detector's stretches
    of speech (the web API's ``vad`` field), not the model's own; a batch job's model id says so."""
    rng = np.random.default_rng(3)
    clip = np.concatenate([0.003 * rng.standard_normal(int(0.3 * SR)), tone_clip("happy", 0.4, rng)]).astype(np.float32)
    path = write_clip(tmp_path / "late.wav", clip)
    long = write_clip(tmp_path / "long.wav", np.concatenate([tone_clip("sad", 1.0, rng), tone_clip("angry", 1.0, rng)]))
    answers = {}
    for name, file, options in (("none", path, ["--vad", "none"]), ("energy", path, ["--vad", "energy"]),
                                ("whole", long, ["--vad", "energy"]), ("split", long, ["--vad", "energy", "--max-segment", "0.5"])):
        code, out, err = run_cli(capsys, "predict", "-m", str(bundle), *options, "-f", "json", str(file))
        assert code == 0, err
        answers[name] = json.loads(out)[0]
        predictor = load_model(bundle)                   # the same numbers as the scorer given that detector
        predictor.scorer.max_segment_s = 0.5 if name == "split" else 10.0
        expected = predictor.scorer.analyse([sf.read(file, dtype="float32")[0]], vad=options[1])[0]
        assert (len(expected.segments) > 1) == (name == "split")
        assert answers[name]["probabilities"] == pytest.approx(dict(zip(EMOTIONS, expected.probabilities)), abs=5e-5)
    assert answers["none"]["speech_s"] > answers["energy"]["speech_s"] + 0.1   # the noisy lead-in is heard only by none
    assert answers["split"]["probabilities"] != answers["whole"]["probabilities"]
    out = tmp_path / "job.csv"
    assert main(["predict", "-m", str(bundle), "-o", str(out), "--no-progress", str(path)]) == 0
    code, _, err = run_cli(capsys, "predict", "-m", str(bundle), "--vad", "none", "-o", str(out), "--resume",
                           "--no-progress", str(path), str(long))
    assert code == 2 and "rows answered by" in err and len(out.read_text().splitlines()) == 2
    config = json.loads((bundle / "config.json").read_text())     # a model whose own detector is auto:
    (bundle / "config.json").write_text(json.dumps({**config, "scoring": {"vad": "auto"}}))
    own, silero, energy = load_model(bundle), load_model(bundle), load_model(bundle)
    silero.scorer.vad, energy.scorer.vad = "silero", "energy"     # auto is silero where silero runs
    assert model_id(silero) == model_id(own) != model_id(energy)


def test_timelines_and_ray_actors_use_the_detector_given_else_the_models_own(bundle, tmp_path, capsys):
    """A bundle naming its detector: a timeline without --vad uses it (as files and the web API
    do), --vad replaces it; Ray's model actors take the driver's detector."""
    config = json.loads((bundle / "config.json").read_text())
    config["scoring"] = {**config.get("scoring", {}), "vad": "none"}
    (bundle / "config.json").write_text(json.dumps(config))
    rec = write_clip(tmp_path / "rec.wav", tone_clip("sad", 1.2))
    for options, used in (([], "none"), (["--vad", "energy"], "energy")):
        code, out, err = run_cli(capsys, "predict", "-m", str(bundle), "--timeline", "-f", "json", "--no-progress",
                                 *options, str(rec))
        assert code == 0, err
        assert json.loads(out)["vad"] == used
    from serkit.ray_engine import ScoreActor          # (constructed here without Ray)
    actor = ScoreActor(str(bundle), vad="energy", max_segment_s=0.5)
    assert (actor.predictor.scorer.vad, actor.predictor.scorer.max_segment_s) == ("energy", 0.5)
    assert ScoreActor(str(bundle)).predictor.scorer.vad == "none"
    with pytest.raises(ValueError, match="unknown vad 'loud'"):
        ScoreActor(str(bundle), vad="loud")

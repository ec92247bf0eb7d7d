"""Batch jobs: incremental CSV/JSONL output, decoding workers, errors recorded, kill and resume."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from serkit.batch import ResultWriter, manifest_paths, model_id, read_done, run_batch
from serkit.bundle import save_bundle
from serkit.cli import main
from serkit.inference import load_model
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from synth import EMOTIONS, SR, tone_clip, write_clip, write_corrupt

TESTS = Path(__file__).parent


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)).eval()
    return save_bundle(tmp_path / "bundle", model, list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 0.5})


def make_files(root: Path, n: int = 14, corrupt: tuple[int, ...] = (3, 9)) -> list[Path]:
    """``n`` clips of 0.3-1.2 s in two folders, ``corrupt`` of them undecodable."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = root / f"d{i % 2}" / f"clip_{i:03d}.wav"
        if i in corrupt:
            files.append(write_corrupt(path, seed=i))
        else:
            files.append(write_clip(path, tone_clip(EMOTIONS[i % 3], float(rng.uniform(0.3, 1.2)), rng)))
    return files


def rows_of(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_file_once_errors_recorded_and_same_as_predict_files(bundle, tmp_path):
    files = [str(f) for f in make_files(tmp_path / "audio")]
    predictor = load_model(bundle)
    out = tmp_path / "out.csv"
    summary = run_batch(predictor, files + files[:2], out, batch_size=4, progress=False)
    assert (summary.total, summary.scored, summary.failed, summary.duplicates) == (14, 12, 2, 2)
    rows = rows_of(out)
    assert [r["file"] for r in rows] == files                      # input order, each once
    expected = {p.file: p for p in predictor.predict_files(files)}
    for r in rows:
        e = expected[r["file"]]
        if e.error:
            assert r["error"] == e.error and "cannot decode" in r["error"] and r["emotion"] == ""
        else:
            assert r["emotion"] == e.emotion and r["error"] == ""
            assert [float(r[l]) for l in EMOTIONS] == pytest.approx([e.probabilities[l] for l in EMOTIONS], abs=1e-4)


def test_decoding_workers_and_jsonl_give_the_same_rows(bundle, tmp_path):
    files = [str(f) for f in make_files(tmp_path / "audio", n=10)]
    predictor = load_model(bundle)
    run_batch(predictor, files, tmp_path / "a.jsonl", batch_size=3, workers=0, progress=False)
    run_batch(predictor, files, tmp_path / "b.jsonl", batch_size=3, workers=2, progress=False)
    a, b = rows_of(tmp_path / "a.jsonl"), rows_of(tmp_path / "b.jsonl")
    assert [r["file"] for r in a] == [r["file"] for r in b] == files
    for x, y in zip(a, b):
        assert x["emotion"] == y["emotion"] and x["error"] == y["error"]
        if x["probabilities"]:
            assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-6)


class Abort(Exception):
    pass


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_aborted_job_resumes_with_every_file_exactly_once(bundle, tmp_path, suffix):
    files = [str(f) for f in make_files(tmp_path / "audio", n=20, corrupt=(5,))]
    predictor = load_model(bundle)
    out = tmp_path / f"out{suffix}"
    batches = []

    def abort_after_two(results):
        batches.append(results)
        if len(batches) == 2:
            raise Abort

    with pytest.raises(Abort):
        run_batch(predictor, files, out, batch_size=3, progress=False, on_batch=abort_after_two)
    first = rows_of(out)
    assert [r["file"] for r in first] == files[:6]
    with open(out, "a") as fh:                       # a kill in the middle of a write
        fh.write(f'{files[6]},ang' if suffix == ".csv" else '{"file": "' + files[6] + '", "emo')

    scored = []
    summary = run_batch(predictor, files, out, batch_size=3, resume=True, progress=False,
                        on_batch=lambda rs: scored.extend(r.file for r in rs))
    assert summary.skipped == 6 and summary.scored + summary.failed == 14
    assert scored == files[6:]                        # nothing done twice
    rows = rows_of(out)
    assert sorted(r["file"] for r in rows) == sorted(files)
    assert rows[:6] == first                          # earlier rows untouched
    # resuming a finished job does nothing
    again = run_batch(predictor, files, out, resume=True, progress=False)
    assert (again.skipped, again.scored, again.failed) == (20, 0, 0) and rows_of(out) == rows


KILLED_JOB = """
import sys, time
sys.path.insert(0, {tests!r})
from serkit.batch import run_batch
from serkit.inference import load_model

predictor = load_model({bundle!r})
slow = predictor.analyse
def analyse(waves, batch_size=64):
    time.sleep(0.3)                      # slow enough to be killed mid-job
    return slow(waves, batch_size)
predictor.analyse = analyse
files = open({listing!r}).read().split("\\n")
run_batch(predictor, files, {out!r}, batch_size=2, progress=False)
"""


def test_job_killed_with_sigkill_resumes_with_every_file_exactly_once(bundle, tmp_path):
    files = [str(f) for f in make_files(tmp_path / "audio", n=24, corrupt=(7,))]
    listing, out = tmp_path / "files.txt", tmp_path / "out.csv"
    listing.write_text("\n".join(files))
    script = KILLED_JOB.format(tests=str(TESTS), bundle=str(bundle), listing=str(listing), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_file() and len(out.read_text().splitlines()) >= 1 + 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    written = [r["file"] for r in rows_of(out)]
    assert 6 <= len(written) < len(files)

    summary = run_batch(load_model(bundle), files, out, batch_size=5, resume=True, progress=False)
    assert summary.skipped == len(written)
    rows = rows_of(out)
    assert sorted(r["file"] for r in rows) == sorted(files)           # every file exactly once
    assert [r["file"] for r in rows[:len(written)]] == written


def test_output_guards(bundle, tmp_path):
    files = [str(f) for f in make_files(tmp_path / "audio", n=4, corrupt=())]
    predictor = load_model(bundle)
    out = tmp_path / "out.csv"
    run_batch(predictor, files, out, progress=False)
    with pytest.raises(ValueError, match="exists; pass --resume"):
        run_batch(predictor, files, out, progress=False)
    with pytest.raises(ValueError, match="use a .csv or .jsonl"):
        ResultWriter(tmp_path / "out.txt", EMOTIONS)
    with pytest.raises(ValueError, match="not this model's"):
        read_done(out, ["neutral", "sad"])
    jl = tmp_path / "out.jsonl"
    run_batch(predictor, files, jl, progress=False)
    with pytest.raises(ValueError, match="other labels"):
        read_done(jl, ["neutral", "sad"])


@pytest.mark.parametrize("name", ["OUT.CSV", "Out.JSONL"])
def test_an_output_named_in_capitals_is_the_same_format(bundle, tmp_path, name):
    files = [str(f) for f in make_files(tmp_path / "audio", n=4, corrupt=())]
    predictor = load_model(bundle)
    out = tmp_path / name
    run_batch(predictor, files[:2], out, progress=False)
    lines = out.read_text().splitlines()
    assert (lines[0].startswith("file,emotion") if name.endswith("CSV") else json.loads(lines[0])["file"] == files[0])
    summary = run_batch(predictor, files, out, resume=True, progress=False)
    assert (summary.skipped, summary.scored) == (2, 2)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_continues_only_a_job_the_same_model_answered(bundle, tmp_path, suffix):
    """Another model (here: the same architecture trained again, so the same labels), or the same
    one adapting to speakers, would mix its answers into the file: refused, the file unchanged."""
    files = [str(f) for f in make_files(tmp_path / "audio", n=6, corrupt=())]
    predictor = load_model(bundle)
    out = tmp_path / f"out{suffix}"
    run_batch(predictor, files[:3], out, progress=False)
    assert {r["model"] for r in rows_of(out)} == {model_id(predictor)} and model_id(predictor).startswith(f"{bundle.parent.name}@")   # <run>/bundle: the run's name
    before = out.read_bytes()
    torch.manual_seed(1)        # the same configuration, other weights: another model, another id
    other = save_bundle(tmp_path / "other" / "bundle", CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8],
                        lstm_hidden=16)).eval(), list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 0.5})
    assert load_model(other).config == predictor.config and model_id(load_model(other)) != model_id(predictor)
    carded = json.loads((bundle / "config.json").read_text())          # a card rewritten: the same model
    carded["metrics"] = {"test": {"uar": 0.5}}
    (bundle / "config.json").write_text(json.dumps(carded))
    assert model_id(load_model(bundle)) == model_id(predictor)
    with pytest.raises(ValueError, match=f"rows answered by {re.escape(model_id(predictor))}, not "
                                         f"{re.escape(model_id(load_model(other)))}: --resume would mix"):
        run_batch(load_model(other), files, out, resume=True, progress=False)
    assert out.read_bytes() == before
    with pytest.raises(ValueError, match="--resume would mix"):          # the same model, adapting to speakers
        read_done(out, EMOTIONS, model=model_id(predictor, same_speaker=True, speakers="folder"))
    assert out.read_bytes() == before
    summary = run_batch(predictor, files, out, resume=True, progress=False)      # the same model: goes on
    assert (summary.skipped, summary.scored) == (3, 3)
    # an output written before rows named their model (no model column or field) is not continued
    old = tmp_path / f"old{suffix}"
    lines = out.read_text().splitlines()
    if suffix == ".csv":
        old.write_text("".join(",".join(line.split(",")[:-1]) + "\n" for line in lines))
    else:
        old.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "model"}) + "\n"
                               for line in lines))
    with pytest.raises(ValueError, match="a model serkit did not name"):
        run_batch(predictor, files, old, resume=True, progress=False)


def test_manifest_paths(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "list.csv").write_text("Dataset,Emotion,File\nx,angry,wav/a.wav\nx,sad,/abs/b.wav\nx,sad,\n")
    assert manifest_paths(tmp_path / "m" / "list.csv") == [str(tmp_path / "m" / "wav" / "a.wav"), "/abs/b.wav"]
    (tmp_path / "bad.csv").write_text("name,label\na.wav,x\n")
    with pytest.raises(ValueError, match="no column of audio paths"):
        manifest_paths(tmp_path / "bad.csv")


def test_cli_batch_job_over_folder_glob_and_manifest(bundle, tmp_path, capsys):
    files = make_files(tmp_path / "audio", n=9, corrupt=(4,))
    (tmp_path / "audio" / "notes.txt").write_text("not audio")
    (tmp_path / "audio" / "d0" / "notes.txt").write_text("not audio")    # in a folder given: counted
    manifest = tmp_path / "list.csv"
    manifest.write_text("File\n" + "\n".join(os.path.relpath(f, tmp_path) for f in files[:3]) + "\n")
    out = tmp_path / "res" / "out.jsonl"
    args = ["predict", "--model", str(bundle), str(tmp_path / "audio" / "d0"), str(tmp_path / "audio" / "d1" / "*.wav"),
            str(manifest), "--output", str(out), "--batch-size", "2", "--workers", "1", "--no-progress"]
    assert main(args) == 1                                   # one file could not be decoded
    err = capsys.readouterr().err
    assert "9 files: 8 scored, 1 failed" in err
    assert f"1 file(s) in the folders given are not audio by name and were left out (e.g. {tmp_path / 'audio' / 'd0' / 'notes.txt'})" in err
    rows = rows_of(out)
    assert sorted(Path(r["file"]).resolve() for r in rows) == sorted(f.resolve() for f in files)
    assert main(args + ["--resume"]) == 0
    assert "9 already done" in capsys.readouterr().err
    assert main(["predict", "--model", str(bundle), str(files[0]), "--resume"]) == 2
    assert "add --output" in capsys.readouterr().err


class LoudIsNaN:
    """A runtime whose output is not finite for a window peaking above 0.9, else plain numbers."""

    name = "test"

    def logits(self, windows, lengths):
        out = np.stack([windows.mean(1) * 100, windows.std(1) * 10, np.abs(windows).max(1)], 1)
        out[np.abs(windows).max(1) > 0.9] = np.nan
        return out.astype(np.float32)


def test_every_many_file_path_records_the_same_rows_through_one_loop(tmp_path):
    """predict_files, a batch job, a Ray actor and Predictor.predict_decoded give the same rows:
    the good files answered, an undecodable, a missing and an unscorable file an error each."""
    from serkit.audio import decode_item
    from serkit.display import prediction_dict
    from serkit.inference import Predictor
    from serkit.ray_engine import ScoreActor, _predictions

    rng = np.random.default_rng(1)
    good = [write_clip(tmp_path / f"good{i}.wav", tone_clip(e, 0.8, rng)) for i, e in enumerate(EMOTIONS)]
    loud = write_clip(tmp_path / "loud.wav", 0.95 * np.sin(np.linspace(0, 900, SR)).astype(np.float32))
    corrupt, missing = write_corrupt(tmp_path / "corrupt.wav"), tmp_path / "missing.wav"
    files = [str(f) for f in (good[0], corrupt, good[1], missing, loud, good[2])]
    predictor = Predictor(LoudIsNaN(), {"labels": list(EMOTIONS), "audio": {"sample_rate": SR, "clip_seconds": 0.5},
                                        "scoring": {"vad": "none"}})

    api = [prediction_dict(p) for p in predictor.predict_files(files, batch_size=4)]
    errors = {r["file"]: r["error"] for r in api if r["error"]}
    assert errors == {
        str(corrupt): errors[str(corrupt)],
        str(missing): f"{missing}: file not found",
        str(loud): f"{loud}: the model's output is not finite for this audio (is its level absurd?)"}
    assert errors[str(corrupt)].startswith(f"{corrupt}: cannot decode audio (")
    assert [r["emotion"] is not None for r in api] == [True, False, True, False, False, True]

    decoded = [prediction_dict(p) for p in predictor.predict_decoded([decode_item(f, SR) for f in files])]
    summary = run_batch(predictor, files, tmp_path / "out.jsonl", batch_size=4, workers=0, progress=False)
    actor = ScoreActor.__new__(ScoreActor)        # as Ray runs it, without Ray: the actor's batch call
    actor.predictor = predictor
    ray_rows = [prediction_dict(p) for p in _predictions(actor({"file": np.array(files, dtype=object)}), list(EMOTIONS))]
    assert (summary.scored, summary.failed) == (3, 3)
    job = rows_of(tmp_path / "out.jsonl")
    assert {r.pop("model") for r in job} == {model_id(predictor)}     # each row names what answered it
    assert decoded == api and job == api and ray_rows == api


def test_speaker_groups_by_folder_and_by_manifest(tmp_path):
    """Which files are one voice (--same-speaker --speakers): all, each folder's, or each speaker's
    of a manifest (the corpus column keeps two corpora's speaker 03 apart)."""
    from serkit.inputs import speaker_groups

    files = [str(tmp_path / "a" / "1.wav"), str(tmp_path / "b" / "1.wav"), str(tmp_path / "a" / "2.wav")]
    assert speaker_groups(files) == [[0, 1, 2]] and speaker_groups([]) == []
    assert speaker_groups(files, "folder") == [[0, 2], [1]]
    m = tmp_path / "m.csv"
    m.write_text("File,Speaker,Dataset\na/1.wav,03,x\nb/1.wav,03,y\na/2.wav,03,x\n")
    assert speaker_groups(files, "manifest", [str(m)]) == [[0, 2], [1]]
    m.write_text("path,speaker_id\na/1.wav,s1\nb/1.wav,s1\n")          # no corpus column: one speaker s1
    with pytest.raises(ValueError, match="2.wav is in no manifest given"):
        speaker_groups(files, "manifest", [str(m)])
    assert speaker_groups(files[:2], "manifest", [str(m)]) == [[0, 1]]
    with pytest.raises(ValueError, match="name a manifest CSV"):
        speaker_groups(files, "manifest", [str(tmp_path / "a")])
    m.write_text("path,speaker\na/1.wav,s1\nb/1.wav,\n")      # a file without its speaker: refused
    with pytest.raises(ValueError, match=r"m.csv:3: no speaker for b/1.wav"):
        speaker_groups(files[:2], "manifest", [str(m)])
    m.write_text("path,emotion\na/1.wav,angry\n")
    with pytest.raises(ValueError, match="needs a column of audio paths and one of speakers"):
        speaker_groups(files, "manifest", [str(m)])


def test_a_job_answered_by_a_run_bundle_before_it_was_named_by_its_run_resumes(bundle, tmp_path):
    """Rows written when a run's bundle was called ``bundle`` (same fingerprint) are the same
    model's: --resume continues them; another fingerprint is still refused."""
    files = [str(f) for f in make_files(tmp_path / "audio", n=4, corrupt=())]
    predictor = load_model(bundle)
    out = tmp_path / "out.csv"
    run_batch(predictor, files[:2], out, progress=False)
    mine = model_id(predictor)
    old = "bundle@" + mine.partition("@")[2]
    out.write_text(out.read_text().replace(mine, old))
    summary = run_batch(predictor, files, out, progress=False, resume=True)
    assert summary.skipped == 2 and summary.scored == 2
    out.write_text(out.read_text().replace(mine, "bundle@0123456789"))
    with pytest.raises(ValueError, match="rows answered by bundle@0123456789"):
        run_batch(predictor, files, out, progress=False, resume=True)

"""What serkit writes: never a file it did not write, never an input, and atomically.

Every command that writes (export, train, evaluate, prepare, predict --output/--timeline/--plot)
is pointed at a folder or file holding the user's data, at its own input and at ``.``/``..``:
the user's bytes must come out unchanged, the refusal must be one line before any work, and
``--force`` must write serkit's files without touching anything else.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import serkit.safety as safety
import serkit.training as training
from serkit.bundle import save_bundle
from serkit.cli import main
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from serkit.safety import OutputError, atomic_file, check_output_file, check_output_folder, folder_kind
from synth import EMOTIONS, SR, tiny_config, tone_clip, write_clip, write_ravdess_tree, write_tone_corpus


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha1 of its bytes)."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(path: Path) -> Path:
    """A folder of the user's work: text, notes, photos."""
    (path / "photos").mkdir(parents=True)
    (path / "thesis.txt").write_text("chapter 1\n" * 100)
    (path / "notes.md").write_text("# notes\n")
    (path / "photos" / "a.jpg").write_bytes(os.urandom(2048))
    return path


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)).eval()
    return save_bundle(tmp_path / "bundle", model, list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 0.5})


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -------------------------------------------------------------------------------- export

def test_export_never_empties_a_users_folder(bundle, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    folder = users_folder(tmp_path / "work")
    before = snapshot(folder)
    args = ["export", str(bundle), "--onnx", "--exporter", "torchscript", "-o", str(folder)]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "did not write" in line and "--force" in line
    assert snapshot(folder) == before

    assert main(args + ["--force"]) == 0                     # serkit's files beside the user's
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {"model.onnx", "config.json"} <= set(after)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "work"]   # no temporary folder left

    again = ["export", str(bundle), "--onnx", "--exporter", "torchscript", "-o", str(folder), "--force"]
    assert main(again) == 0                                   # its own files replaced, the user's kept
    assert {k: v for k, v in snapshot(folder).items() if k in before} == before


def test_export_refuses_its_input_and_the_current_folder_before_any_work(bundle, tmp_path, capsys,
                                                                          monkeypatch):
    pytest.importorskip("onnxruntime")
    before = snapshot(bundle)
    import serkit.export as export

    def no_work(*a, **k):
        raise AssertionError("the export started before the output was checked")

    monkeypatch.setattr(export, "_export_graph", no_work)
    assert main(["export", str(bundle), "--onnx", "-o", str(bundle), "--force"]) == 2
    assert "is the input" in one_error_line(capsys.readouterr().err)
    assert main(["export", str(bundle), "--onnx", "-o", str(tmp_path), "--force"]) == 2   # holds the input
    assert "holds the input" in one_error_line(capsys.readouterr().err)
    assert snapshot(bundle) == before

    monkeypatch.chdir(bundle)
    for out in (".", "..", "./", "../bundle"):
        assert main(["export", str(bundle), "--onnx", "-o", out, "--force"]) == 2, out
        line = one_error_line(capsys.readouterr().err)
        assert "current folder" in line or "input" in line, line
    assert snapshot(bundle) == before


def test_export_over_an_earlier_export_replaces_it_whole(bundle, tmp_path):
    pytest.importorskip("onnxruntime")
    from serkit.export import export_onnx

    out = tmp_path / "onnx"
    export_onnx(bundle, out, int8=True, exporter="torchscript")
    assert folder_kind(out) == "export"
    export_onnx(bundle, out, int8=False, exporter="torchscript")     # no --force needed: serkit's own
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx"]   # no stale int8 file
    with pytest.raises(OutputError, match="serkit export folder, not a bundle folder"):
        save_bundle(out, CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)),
                    list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 0.5}, force=True)


# --------------------------------------------------------------------------------- train

def test_train_into_a_users_folder_needs_force_and_keeps_their_files(tmp_path):
    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2, seed=1)
    folder = users_folder(tmp_path / "work")
    (folder / "logs").mkdir()
    (folder / "logs" / "mine.csv").write_text("a,b\n1,2\n")
    before = snapshot(folder)
    with pytest.raises(OutputError, match="did not write"):
        training.train(corpus.manifest, folder, tiny_config(epochs=1))
    assert snapshot(folder) == before
    training.train(corpus.manifest, folder, tiny_config(epochs=1), force=True)
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {"config.json", "split.csv", "bundle/model.safetensors", ".serkit.json"} <= set(after)


def test_train_refuses_a_run_folder_without_resume_or_force(tmp_path, capsys):
    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2, seed=1)
    run = tmp_path / "run"
    training.train(corpus.manifest, run, tiny_config(epochs=1))
    before = snapshot(run)
    assert main(["train", str(corpus.manifest), "--out", str(run), "--epochs", "1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "holds a serkit run" in line and "--resume" in line and "--force" in line
    assert snapshot(run) == before                    # config.json, split.csv, bundle, logs untouched
    with pytest.raises(OutputError, match="holds the input"):
        training.train(corpus.manifest, corpus.root, tiny_config(epochs=1), force=True)


def test_a_run_that_never_trained_is_simply_replaced(tmp_path):
    from serkit.audio import AudioError
    from synth import write_corrupt

    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2, seed=1)
    good = corpus.manifest.read_text()
    bad_clip = corpus.utterances[0].path
    clip_bytes = bad_clip.read_bytes()
    write_corrupt(bad_clip)
    run = tmp_path / "run"
    with pytest.raises(AudioError):                              # fails while decoding, before epoch 0
        training.train(corpus.manifest, run, tiny_config(epochs=1, cache_dir=None))
    assert (run / "config.json").is_file() and not (run / "checkpoints").exists()
    bad_clip.write_bytes(clip_bytes)
    assert corpus.manifest.read_text() == good
    training.train(corpus.manifest, run, tiny_config(epochs=1))   # no --force needed: nothing trained
    assert (run / "bundle" / "model.safetensors").is_file()


def test_checkpoints_are_renamed_into_place_never_written_in_place(tmp_path, monkeypatch):
    corpus = write_tone_corpus(tmp_path / "c", speakers=6, per_emotion=2, seed=1)
    renamed = []
    real_replace = os.replace

    def spy(src, dst):
        renamed.append(Path(dst).name)
        return real_replace(src, dst)

    monkeypatch.setattr(safety.os, "replace", spy)
    training.train(corpus.manifest, tmp_path / "run", tiny_config(epochs=2))
    assert {"best.safetensors", "best.json", "last.ckpt", "config.json", "split.csv"} <= set(renamed)
    assert not [p for p in (tmp_path / "run").rglob("*.tmp")]

    # a write that fails half-way leaves the previous checkpoint whole
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()

    def half_then_fail(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(training.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        training.AtomicCheckpointIO().save_checkpoint({"epoch": 9}, last)
    assert last.read_bytes() == good
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.json", "best.safetensors", "last.ckpt"]


def test_evaluate_refuses_a_users_folder(tmp_path, tmp_path_factory, capsys):
    from synth import trained_run

    corpus, run, _ = trained_run(tmp_path_factory)
    folder = users_folder(tmp_path / "work")
    (folder / "report.json").write_text('{"mine": true}')
    before = snapshot(folder)
    assert main(["evaluate", str(run / "bundle"), str(corpus.manifest), "--out", str(folder)]) == 2
    assert "did not write" in one_error_line(capsys.readouterr().err)
    assert snapshot(folder) == before


# ----------------------------------------------------------------------- predict --output

def serkit_rows(bundle: Path, tmp_path: Path, suffix: str) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(0)
    files = [str(write_clip(tmp_path / "audio" / f"c{i}.wav", tone_clip(EMOTIONS[i % 3], 0.5, rng)))
             for i in range(4)]
    out = tmp_path / f"out{suffix}"
    assert main(["predict", "--model", str(bundle), *files[:2], "--output", str(out), "--no-progress"]) == 0
    return out, files


@pytest.mark.parametrize("suffix,text", [
    (".csv", "name,score\nalice,1\nbob,2\ncarol,3"),               # a user's CSV, no final newline
    (".csv", "file,emotion\nx.wav,angry\n"),                        # starts like ours, is not
    (".jsonl", '{"id": 1}\n{"id": 2}\n{"id": 3'),                   # JSON lines without "file"
    (".jsonl", '{"file": "a.wav"}\n'),                              # a "file" key alone is not a serkit row
    (".jsonl", "hello"),                                            # one line, no newline
])
def test_resume_never_cuts_a_file_serkit_did_not_write(bundle, tmp_path, capsys, suffix, text):
    _, files = serkit_rows(bundle, tmp_path, suffix)
    capsys.readouterr()
    user = tmp_path / f"user{suffix}"
    user.write_text(text)
    assert main(["predict", "--model", str(bundle), *files, "--output", str(user), "--resume", "--no-progress"]) == 2
    assert "unchanged" in one_error_line(capsys.readouterr().err)
    assert user.read_text() == text


def test_resume_still_repairs_serkits_own_cut_row(bundle, tmp_path, capsys):
    out, files = serkit_rows(bundle, tmp_path, ".jsonl")
    whole = out.read_bytes()
    out.write_bytes(whole + b'{"file": "/cut/off/here.wav", "emo')       # a kill mid-write
    assert main(["predict", "--model", str(bundle), *files, "--output", str(out), "--resume", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == sorted(files)


def test_batch_output_that_is_an_input_or_exists_is_refused(bundle, tmp_path, capsys):
    out, files = serkit_rows(bundle, tmp_path, ".csv")
    listing = tmp_path / "list.csv"
    listing.write_text("File\n" + "\n".join(files) + "\n")
    before = listing.read_text()
    capsys.readouterr()
    for extra in ([], ["--resume"], ["--force"]):
        assert main(["predict", "--model", str(bundle), str(listing), "--output", str(listing), *extra]) == 2
        assert "is also an input" in one_error_line(capsys.readouterr().err)
    assert listing.read_text() == before
    assert main(["predict", "--model", str(bundle), *files, "--output", str(out), "--no-progress"]) == 2
    assert "--force" in one_error_line(capsys.readouterr().err)
    assert main(["predict", "--model", str(bundle), *files, "--output", str(out), "--force", "--no-progress"]) == 0
    assert len(out.read_text().splitlines()) == 1 + len(files)              # started over


# ------------------------------------------------------------------------------- prepare

def test_prepare_never_replaces_its_input_list_or_a_users_file(tmp_path, capsys):
    clips = write_ravdess_tree(tmp_path / "tree", actors=2, seconds=0.3)
    listing = tmp_path / "list.csv"
    listing.write_text("path,emotion,speaker\n" + "".join(f"{c},angry,s{i % 2}\n" for i, c in enumerate(clips)))
    before = listing.read_text()
    for extra in ([], ["--force"]):
        assert main(["prepare", str(listing), "-o", str(listing), *extra]) == 2
        assert "is also an input" in one_error_line(capsys.readouterr().err)
    assert listing.read_text() == before

    user = tmp_path / "data.csv"
    user.write_text("my,own\n1,2\n")
    assert main(["prepare", str(tmp_path / "tree"), "-o", str(user)]) == 2
    assert "did not write" in one_error_line(capsys.readouterr().err)
    assert user.read_text() == "my,own\n1,2\n"

    manifest = tmp_path / "manifest.csv"
    assert main(["prepare", str(tmp_path / "tree"), "-o", str(manifest)]) == 0
    assert main(["prepare", str(tmp_path / "tree"), "-o", str(manifest)]) == 0     # its own: replaced
    assert main(["prepare", str(tmp_path / "tree"), "-o", str(user), "--force"]) == 0
    assert user.read_text().startswith("Dataset,Emotion,File")


# ------------------------------------------------------------------------------ timeline

def test_timeline_outputs_replace_only_serkits_own_files(bundle, tmp_path, capsys):
    rec = write_clip(tmp_path / "rec.wav", np.concatenate([tone_clip(e, 1.0, np.random.default_rng(1))
                                                           for e in EMOTIONS]))
    base = ["predict", "--timeline", str(rec), "--model", str(bundle), "--vad", "none", "--no-progress"]
    user_json, user_png = tmp_path / "existing.json", tmp_path / "photo.png"
    user_json.write_text('{"my": "data"}\n')
    user_png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    before = snapshot(tmp_path)
    assert main(base + ["-o", str(user_json)]) == 2
    assert "did not write" in one_error_line(capsys.readouterr().err)
    assert main(base + ["--plot", str(user_png)]) == 2
    assert "did not write" in one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before

    out, png = tmp_path / "tl.json", tmp_path / "tl.png"
    assert main(base + ["-o", str(out), "--plot", str(png)]) == 0
    assert main(base + ["-o", str(out), "--plot", str(png)]) == 0           # serkit's own: replaced
    assert json.loads(out.read_text())["vad"] == "none"
    assert main(base + ["-o", str(user_json), "--force"]) == 0
    assert json.loads(user_json.read_text())["vad"] == "none"


def test_plots_of_recordings_that_share_a_name_do_not_replace_each_other(bundle, tmp_path, capsys):
    recs = [write_clip(tmp_path / d / "x.wav", np.concatenate([tone_clip(e, 1.0, np.random.default_rng(i))
                                                               for e in EMOTIONS])) for i, d in enumerate("ab")]
    base = ["predict", "--timeline", "--model", str(bundle), "--vad", "none", "--no-progress"]
    plots = tmp_path / "plots"
    assert main(base + [*map(str, recs), "--plot", str(plots)]) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["a_x.wav.png", "b_x.wav.png"]
    from serkit.cli.predict import plot_paths                        # names that still meet get a number
    names = plot_paths(str(plots), ["a/b/x.wav", "a_b/x.wav", "a/x.wav", "b/x.wav", "a_x.wav.mp3"])
    assert len(set(names.values())) == 5 and {p.name for p in names.values()} >= {"a_b_x.wav-1.png", "a_b_x.wav-2.png"}
    assert main(base + [str(recs[0]), "--plot", str(tmp_path / "one")]) == 0     # no suffix: a folder
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["x.png"]
    capsys.readouterr()
    before = snapshot(tmp_path)
    for plot, words in (("x.jpg", "plots are PNG"), ("a/x.wav", "plots are PNG")):
        assert main(base + [str(recs[0]), "--plot", str(tmp_path / plot)]) == 2
        assert words in one_error_line(capsys.readouterr().err)
    assert main(base + [*map(str, recs), "--plot", str(tmp_path / "p.png")]) == 2
    assert "name a folder" in one_error_line(capsys.readouterr().err)
    assert main(base + [*map(str, recs), "--plot", str(recs[0])]) == 2
    assert "a file is there" in one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


def test_a_place_that_cannot_be_written_is_refused_before_any_work(bundle, tmp_path, capsys, monkeypatch):
    """A read-only or full folder (simulated: the tests may run as root, whom permissions do not
    stop) fails every output option before scoring, naming the option, and leaves nothing."""
    import tempfile

    import serkit.inference

    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and Path(dir).resolve() == ro.resolve():
            raise OSError(30, "Read-only file system")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(serkit.inference.Predictor, "predict_timeline", lambda *a, **k: pytest.fail("scored"))
    monkeypatch.setattr(serkit.inference.Predictor, "predict_files", lambda *a, **k: pytest.fail("scored"))
    rec = write_clip(tmp_path / "rec.wav", tone_clip("angry", 4.0, np.random.default_rng(0)))
    for args, flag in ((["--timeline", "-o", str(ro / "t.json")], "--output"),
                       (["--timeline", "--plot", str(ro / "sub" / "p.png")], "--plot"),
                       (["-o", str(ro / "rows.csv")], "--output")):
        assert main(["predict", str(rec), "--model", str(bundle), "--no-progress", *args]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith(f"error: {flag} ") and f"cannot write in {ro} (Read-only file system)" in line
    assert main(["prepare", str(tmp_path / "rec.wav"), "-o", str(ro / "m.csv")]) == 2
    assert "cannot write in" in one_error_line(capsys.readouterr().err)
    assert list(ro.iterdir()) == []


# ------------------------------------------------------------------------------- helpers

def test_output_checks(tmp_path, monkeypatch):
    folder = users_folder(tmp_path / "work")
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(folder)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_folder(folder / "notes.md", "run")
    link = tmp_path / "link.csv"
    link.symlink_to(folder / "notes.md")
    with pytest.raises(OutputError, match="is also an input"):        # the same file once resolved
        check_output_file(link, inputs=[folder / "notes.md"], force=True)
    monkeypatch.chdir(folder / "photos")
    with pytest.raises(OutputError, match="current folder or one above it"):
        check_output_folder(tmp_path, "export", force=True)
    assert check_output_folder(tmp_path / "new", "export") == tmp_path / "new"
    assert not (tmp_path / "new").exists()                              # a check creates nothing

    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "t.txt", "work"]

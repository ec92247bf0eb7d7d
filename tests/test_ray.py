"""serkit predict --engine ray: Ray Data with model actors gives the local engine's rows.

Skipped when Ray is not installed (it is the optional extra serkit[ray], not part of dev).
"""
from __future__ import annotations

import pytest

pytest.importorskip("ray")

from serkit.batch import run_batch  # noqa: E402
from serkit.cli import main  # noqa: E402
from serkit.inference import load_model  # noqa: E402
from test_batch import bundle, make_files, rows_of  # noqa: E402,F401  (bundle is a fixture)


@pytest.mark.slow
def test_ray_engine_matches_local_and_resumes(bundle, tmp_path, capsys):  # noqa: F811
    files = [str(f) for f in make_files(tmp_path / "audio", n=240, corrupt=(17, 101, 230))]
    local = tmp_path / "local.jsonl"
    run_batch(load_model(bundle), files, local, batch_size=16, progress=False)

    # a job that stopped after 50 files, finished on Ray with --resume
    out = tmp_path / "ray.jsonl"
    run_batch(load_model(bundle), files[:50], out, batch_size=16, progress=False)
    code = main(["predict", str(tmp_path / "audio"), "--model", str(bundle), "--output", str(out), "--resume",
                 "--engine", "ray", "--actors", "2", "--batch-size", "16", "--no-progress"])
    assert code == 1                          # two of the files left cannot be decoded (one was done)
    assert "240 files: 188 scored, 2 failed, 50 already done" in capsys.readouterr().err

    expected = {r["file"]: r for r in rows_of(local)}
    rows = rows_of(out)
    assert sorted(r["file"] for r in rows) == sorted(files)       # every file exactly once
    for r in rows:
        e = expected[r["file"]]
        assert r["emotion"] == e["emotion"] and r["error"] == e["error"]
        if e["probabilities"]:
            assert r["probabilities"] == pytest.approx(e["probabilities"], abs=1e-6)
            assert r["duration_s"] == pytest.approx(e["duration_s"], abs=1e-6)


def test_ray_engine_needs_an_output(bundle, tmp_path, capsys):  # noqa: F811
    files = make_files(tmp_path / "audio", n=1, corrupt=())
    assert main(["predict", str(files[0]), "--model", str(bundle), "--engine", "ray"]) == 2
    assert "add --output" in capsys.readouterr().err

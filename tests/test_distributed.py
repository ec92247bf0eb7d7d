"""Training on several processes: Lightning DDP with two CPU processes over gloo.

Lightning's ``ddp`` strategy starts the other ranks by running the same script again, so the
run goes through a small script in a subprocess (as a user's ``serkit train --strategy ddp
--devices 2`` would), not inside the pytest process.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serkit.inference import load_model
from synth import EMOTIONS, tone_clip

TESTS = Path(__file__).parent

SCRIPT = """
import json, os, sys
import torch
sys.path.insert(0, {tests!r})
from synth import tiny_config, write_tone_corpus
from serkit.training import train

base = {base!r}
corpus = write_tone_corpus(os.path.join(base, "corpus"), speakers=8, per_emotion=4, seed=0)
report = train(corpus.manifest, os.path.join(base, "run"),
               tiny_config(epochs=5, strategy="ddp", devices=2, accelerator="cpu"))
rank = int(os.environ.get("LOCAL_RANK", 0))
with open(os.path.join(base, f"result-{{rank}}.json"), "w") as fh:   # a file each: two processes' prints may interleave
    json.dump({{"rank": rank, "accuracy": report.get("accuracy"),
               "group_left": not torch.distributed.is_initialized()}}, fh)
"""


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_one_bundle(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), base=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log
    results = [json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1)]
    # both ranks trained; only rank 0 evaluates and writes the bundle
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["accuracy"] is not None and results[0]["accuracy"] >= 0.8
    assert results[1]["accuracy"] is None
    # both ranks left the process group (gloo's threads alive at exit can abort the process)
    assert all(r["group_left"] for r in results)

    run = tmp_path / "run"
    config = json.loads((run / "bundle" / "config.json").read_text())
    assert "strategy" not in config["training"]["config"]    # how it ran is not what it made
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert config["training"]["best_epoch"] == best["epoch"]
    # each rank saw half of the training clips: half as many optimizer steps per epoch
    train_clips = sum(1 for row in csv.DictReader(open(run / "split.csv")) if row["Split"] == "train")
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv")) if r["train_loss"]]
    per_epoch = steps[1] - steps[0]
    assert per_epoch <= -(-train_clips // (2 * 16))          # ceil(clips / (2 ranks x batch 16))

    predictor = load_model(run / "bundle")
    rng = np.random.default_rng(5)
    probs = predictor.predict_proba([tone_clip(e, 0.5, rng) for e in EMOTIONS])
    assert [predictor.labels[i] for i in probs.argmax(1)] == list(EMOTIONS)




VALIDATE = """
import json, os, sys, warnings
sys.path.insert(0, {tests!r})
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset
from serkit.callbacks import leave_process_group
from serkit.training import SERModule, TrainConfig
from test_val_metrics import PRED, Y, Logits, logits_of

data = TensorDataset(logits_of(PRED), torch.full((len(Y),), 3), torch.from_numpy(Y))
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False)
warnings.filterwarnings("ignore")
logged = trainer.validate(SERModule(Logits(), TrainConfig(), None, n_classes=3), DataLoader(data, batch_size=4),
                          verbose=False)[0]
with open(f"result-{{trainer.global_rank}}.json", "w") as fh:   # a file each: two processes' prints may interleave
    json.dump({{k: float(v) for k, v in logged.items()}}, fh)
leave_process_group()   # as train() does: gloo's threads alive at exit can abort the process
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_ddp_validation_metrics_are_those_of_the_whole_split(tmp_path):
    """Two processes each score half of 11 clips (one repeated as padding): both log the metrics
    of the whole split, each clip counted once."""
    from serkit.evaluation import metrics
    from test_val_metrics import PRED, Y

    script = tmp_path / "validate_ddp.py"
    script.write_text(VALIDATE.format(tests=str(TESTS)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    results = [json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1)]
    expected = metrics(Y, PRED)
    for r in results:
        assert r["val_uar"] == pytest.approx(expected["uar"], abs=1e-6)
        assert r["val_macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)
        assert r["val_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)

"""Batch jobs on Ray Data: the same Predictor in model actors, on one machine or a cluster.

    pip install 'serkit[ray]'
    serkit predict DATA/ --output results.csv --engine ray [--actors 4] [--ray-address auto]

The file list becomes a Ray dataset; ``map_batches`` hands batches of paths to a pool of
:class:`ScoreActor` actors (each loads the model once, decodes its files and scores them with
the very Predictor the local engine uses); the driver writes the rows in input order with the
same :class:`~serkit.batch.ResultWriter` (flushed per batch, ``--resume`` skips what is done).

On a cluster, start Ray on the machines (``ray start --head`` on one, ``ray start
--address=HEAD:6379`` on the others), then run the command on the head with ``--ray-address
auto``, or anywhere with ``--ray-address ray://HEAD:10001`` (Ray Client). The model folder and
the audio files must be readable at the same paths on every node (a shared file system).
"""
from __future__ import annotations

import json

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from serkit.audio import decode_item
from serkit.batch import BatchSummary, ResultWriter, file_key, unique, write_batches
from serkit.inference import Prediction


def _require_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'serkit[ray]'") from None
    return ray


class ScoreActor:
    """A Ray actor: loads the model once, then decodes and scores batches of paths."""

    def __init__(self, model: str | None, runtime: str = "auto", threads: int = 1, vad: str | None = None,
                 max_segment_s: float | None = None):
        import torch

        from serkit.inference import load_model
        torch.set_num_threads(threads)
        self.predictor = load_model(model, runtime=runtime)
        self.predictor.scorer.use_detector(vad, max_segment_s)   # the driver's, as the local engine scores

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        items = [decode_item(str(file), self.predictor.sample_rate) for file in batch["file"]]
        results = self.predictor.predict_decoded(items)
        return {"file": np.array([r.file for r in results], dtype=object),
                "row": np.array([r.to_json() for r in results], dtype=object)}


def _predictions(batch: dict[str, np.ndarray], labels: list[str]) -> list[Prediction]:
    """The Predictions of a scored batch (each row travels as its JSON)."""
    out = []
    for row in batch["row"]:
        d = json.loads(str(row))
        d.pop("confidence", None)
        out.append(Prediction(**d))
    return out


def run_ray(model: str | os.PathLike | None, files: Iterable[str | os.PathLike], output: str | os.PathLike, *,
            labels: list[str], runtime: str = "auto", batch_size: int = 32, actors: int = 2,
            address: str | None = None, resume: bool = False, progress: bool = True, force: bool = False,
            inputs: list[str | os.PathLike] | tuple = (), model_id: str | None = None,
            vad: str | None = None, max_segment_s: float | None = None) -> BatchSummary:
    """Score ``files`` into ``output`` (.csv or .jsonl) on Ray Data with ``actors`` model actors.

    ``labels`` are the model's (the driver writes the header without loading the model), and
    ``model_id`` (:func:`serkit.batch.model_id`) names it in every row;
    ``vad``/``max_segment_s``: the speech detector and segment limit the actors score with
    (default: the model's own); ``address`` is a Ray cluster's (``auto``, ``ray://host:10001``) or None for a local Ray.
    """
    ray = _require_ray()
    if actors < 1 or batch_size < 1:
        raise ValueError("--actors and --batch-size must be at least 1")
    files, duplicates = unique(str(f) for f in files)
    model = str(Path(model).resolve()) if model is not None else None
    with ResultWriter(output, labels, resume=resume, force=force, inputs=inputs, model=model_id) as writer:
        todo = [f for f in files if file_key(f) not in writer.done]
        skipped = len(files) - len(todo)
        scored = failed = 0
        if todo:
            started_here = not ray.is_initialized()
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            if started_here:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, ignore_reinit_error=True)
            try:
                ctx = ray.data.DataContext.get_current()
                ctx.execution_options.preserve_order = True      # rows in input order, as locally
                ctx.enable_progress_bars = False
                ds = ray.data.from_items([{"file": f} for f in todo], override_num_blocks=max(1, min(
                    len(todo) // batch_size + 1, 4 * actors)))
                ds = ds.map_batches(ScoreActor, fn_constructor_kwargs={"model": model, "runtime": runtime, "vad": vad,
                                                                     "max_segment_s": max_segment_s},
                                    batch_size=batch_size, concurrency=actors, num_cpus=1, batch_format="numpy")
                batches = (_predictions(batch, labels)
                           for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"))
                scored, failed = write_batches(batches, writer, len(files), skipped, "scoring (ray)", progress)
            finally:
                if started_here:
                    ray.shutdown()
    return BatchSummary(Path(output), len(files), skipped, scored, failed, duplicates)

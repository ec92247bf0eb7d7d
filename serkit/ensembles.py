"""``serkit ensemble RUN RUN ... --out DIR``: trained runs of one split, answering as one model.

    serkit train data/manifest.csv --out runs/s0 --seed 0 --split-seed 0 ...
    serkit train data/manifest.csv --out runs/s1 --seed 1 --split-seed 0 ...
    serkit ensemble runs/s0 runs/s1 --out runs/ens
    serkit export runs/ens/bundle --onnx --int8-only -o my_model

The members (CNN-LSTM runs; :data:`serkit.models.configs.MEMBER_TYPES`) must share their clips,
labels, split, window and speech detection: the validation speakers they were all chosen on fit
the ensemble's temperature, and the test speakers none of them heard score it, through the one
scorer, as ``serkit train`` scores a run (:func:`serkit.training.finish`). Members trained with
``--refit-epochs`` have heard the validation speakers: their first runs' weights
(``checkpoints/best.safetensors``) fit the ensemble's temperature, and the refitted ones serve
(as a refitted run fits its own). The folder ``DIR``
is written as a run folder is (``split.csv``, ``bundle/``, ``eval/``); the bundle holds every
member's weights and the settings each was trained with (:class:`serkit.models.ensemble.Ensemble`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from serkit.audio import SAMPLE_RATE, decode_all
from serkit.bundle import load_bundle
from serkit.config import TrainConfig
from serkit.manifest import read_manifest, with_split, write_manifest
from serkit.models.configs import MAX_MEMBERS, MEMBER_TYPES, EnsembleConfig
from serkit.run_folder import BEST_WEIGHTS, check_run_folder, claim_run_folder
from serkit.training import finish, select_labels


class EnsembleError(ValueError):
    """Runs that cannot answer together; says which and why."""


def _clips(run: Path) -> list[tuple[str, str, str]]:
    """(resolved file, emotion, part) of every clip of the run's split (its own ``split.csv``)."""
    return [(str(Path(u.path).resolve()), u.emotion, u.split) for u in read_manifest(run / "split.csv")]


def read_members(runs: list[str | os.PathLike]) -> tuple[list[Path], list[dict[str, Any]]]:
    """The runs, checked to be ensemble members of one another; returns them with their bundles'
    configs. Raises :class:`EnsembleError` naming the run and what differs."""
    from serkit.bundle import read_config

    paths = [Path(r) for r in runs]
    if not 2 <= len(paths) <= MAX_MEMBERS:
        raise EnsembleError(f"an ensemble has 2 to {MAX_MEMBERS} runs, not {len(paths)}")
    if len({p.resolve() for p in paths}) != len(paths):
        raise EnsembleError("a run is given twice")
    configs = []
    for p in paths:
        if not (p / "split.csv").is_file() or not (p / "config.json").is_file() or not (p / "bundle").is_dir():
            raise EnsembleError(f"{p}: not a finished serkit run (it needs config.json, split.csv and bundle/)")
        c = read_config(p / "bundle")
        if c["model_type"] not in MEMBER_TYPES:
            raise EnsembleError(f"{p}: a {c['model_type']} run; an ensemble holds {', '.join(MEMBER_TYPES)} runs")
        configs.append(c)
    first, clips = paths[0], _clips(paths[0])
    for p, c in zip(paths[1:], configs[1:]):
        for key in ("labels", "audio", "scoring"):
            if c.get(key) != configs[0].get(key):
                raise EnsembleError(f"{p}: its {key} ({c.get(key)}) differ from {first}'s ({configs[0].get(key)})")
        if _clips(p) != clips:
            raise EnsembleError(f"{p}: its clips or split differ from {first}'s; train the members on one split "
                                "(serkit train --split-seed N)")
    return paths, configs


def before_validation(run: Path, config: dict[str, Any], model: Any) -> dict[str, Any] | None:
    """A member's weights before the validation speakers joined its training: for a run trained
    with ``--refit-epochs``, its first run's best epoch (``checkpoints/best.safetensors``, read
    without unpickling); None for a member never trained on them. Checked against the member's
    model here, before the ensemble's folder is claimed."""
    if not refit_epochs(config):
        return None
    path = run / BEST_WEIGHTS
    if not path.is_file():
        raise EnsembleError(f"{run}: trained with --refit-epochs, but its first run's weights ({path}) are missing; "
                            "they fit the ensemble's temperature on the validation speakers the refit heard")
    from safetensors.torch import load_file

    state, expected = load_file(path), model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != v.shape for k, v in expected.items()):
        raise EnsembleError(f"{path}: its weights do not fit {run}'s model")
    return state


def refit_epochs(config: dict[str, Any]) -> int | None:
    """The epochs a member was trained again for with the validation speakers (None: it was not)."""
    return ((config.get("training") or {}).get("refit") or {}).get("epochs")


def ensemble_runs(runs: list[str | os.PathLike], out: str | os.PathLike, force: bool = False,
                  progress: bool = True) -> dict[str, Any]:
    """Write the ensemble of ``runs`` (see the module's docstring) to the run folder ``out``;
    returns its test report (empty without test clips). ``out`` is checked as ``serkit train``
    checks its ``--out`` (a new or empty folder, or ``force``)."""
    from serkit.models.ensemble import Ensemble

    paths, configs = read_members(runs)
    out = Path(out)
    clean = check_run_folder(out, [p / "bundle" for p in paths], resume=False, force=force, resumable=False)
    cfgs = [TrainConfig.from_dict(json.loads((p / "config.json").read_text(encoding="utf-8"))) for p in paths]
    cfg = cfgs[0]
    cfg.progress = progress
    utts, labels = select_labels(read_manifest(paths[0] / "split.csv"), configs[0]["labels"])
    parts = [u.split for u in utts]
    models = [load_bundle(p / "bundle")[0] for p in paths]
    members = [{"model_type": c["model_type"], "model_config": c["model_config"], "temperature": c["temperature"],
                "seed": run_cfg.seed} for c, run_cfg in zip(configs, cfgs)]
    model = Ensemble(EnsembleConfig(n_classes=len(labels), members=members), models).eval()
    before = [before_validation(p, c, m) for p, c, m in zip(paths, configs, models)]
    calibration = {}
    if any(b is not None for b in before):   # the members as they were before the validation speakers joined
        calibration["calibration_state"] = {f"members.{i}.{k}": v for i, (b, m) in enumerate(zip(before, models))
                                            for k, v in (m.state_dict() if b is None else b).items()}
        calibration["refit"] = {"members": [refit_epochs(c) for c in configs],
                                "note": "members trained again on training + validation clips for their chosen "
                                        "epochs; their first runs fit the temperature and give the validation figures"}
    # every clip read before the folder is claimed: an ensemble that cannot be scored changes nothing
    waves = decode_all(utts, SAMPLE_RATE, cfg.cache_dir or None, progress=progress)
    claim_run_folder(out, clean)
    write_manifest(with_split(utts, parts), out / "split.csv")
    alone = [{"run": str(p), "seed": run_cfg.seed,
              "validation_uar": c.get("training", {}).get("validation", {}).get("uar"),
              "test_uar": c.get("metrics", {}).get("test", {}).get("uar"),
              "refit_epochs": refit_epochs(c)}
             for p, c, run_cfg in zip(paths, configs, cfgs)]
    augments = [c.get("training", {}).get("augment") for c in configs]
    same = {"augment": augments[0]} if augments[0] and all(a == augments[0] for a in augments) else {}
    return finish(model, cfg, labels, utts, parts, waves, out, **same, **calibration,
                  ensemble={"members": alone, "combine": "mean of the members' calibrated probabilities"})

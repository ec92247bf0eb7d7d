"""Metrics, calibration and reports: what a model is worth on held-out speakers.

Reports give accuracy, macro-F1, weighted F1 and UAR (unweighted average recall, i.e.
scikit-learn's balanced accuracy: the mean of per-class recalls, the usual SER headline since it
ignores class imbalance), the classification report, confusion matrices, per-corpus and
per-speaker breakdowns, and calibration (expected calibration error before and after the
temperature stored in the bundle).
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    recall_score,
)

from serkit.safety import atomic_file, atomic_write_text, claim_output_folder, write_json  # noqa: E402
from serkit.scorer import UNCERTAIN_BELOW, UNCERTAIN_MARGIN, softmax, uncertain  # noqa: E402
from serkit.corpora import words_give_label  # noqa: E402
from serkit.manifest import Utterance  # noqa: E402


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1, weighted_f1, uar for integer label arrays. A prediction of -1 (no
    answer: no speech found) counts as wrong and is not a class of its own."""
    classes = np.unique(np.concatenate([y_true, y_pred[y_pred >= 0]]))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
        "uar": float(recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T).

    Fitted on the validation split (Guo et al., 2017); it rescales confidence without changing
    any prediction.
    """
    logits = logits.astype(np.float64)

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(y_true)), y_true] - np.log(np.exp(z).sum(axis=1))).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def _breakdown(keys: list[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for k in sorted(set(keys)):
        sel = np.array([x == k for x in keys])
        out[k] = metrics(y_true[sel], y_pred[sel])
    return out


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, normalize: bool, title: str) -> None:
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay(values, display_labels=labels).plot(
        ax=ax, cmap="Blues", values_format=".2f" if normalize else "d", colorbar=True)
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    fig.tight_layout()
    save_figure(fig, path, 120)


def plot_reliability(probs_before: np.ndarray, probs_after: np.ndarray, y_true: np.ndarray,
                     path: Path, n_bins: int = 10) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for probs, name in ((probs_before, "before"), (probs_after, "after temperature")):
        conf, correct = probs.max(1), probs.argmax(1) == y_true
        bins = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
        acc = [correct[bins == b].mean() if (bins == b).any() else np.nan for b in range(n_bins)]
        ax.plot(centres, acc, marker="o",
                label=f"{name} (ECE {expected_calibration_error(probs, y_true):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, 120)


#: What an evaluation writes into its folder (serkit replaces these; other files there stay).
EVAL_FILES = ("report.json", "report.md", "predictions.csv", "confusion_counts.png",
              "confusion_normalized.png", "reliability.png")


def save_figure(fig, path: Path, dpi: int) -> None:
    """A matplotlib figure as a PNG at ``path``, written atomically; the figure is closed."""
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    plt.close(fig)


def flag_figures(probs: np.ndarray, y: np.ndarray, below: float = UNCERTAIN_BELOW,
                 margin: float = UNCERTAIN_MARGIN) -> dict[str, float | None]:
    """How far the uncertain flag can be trusted: the share of answers flagged, and the accuracy
    of the flagged and of the other answers (None where there are none)."""
    flag = uncertain(probs, below, margin) if len(probs) else np.zeros(0, bool)
    right = probs.argmax(1) == y if len(probs) else np.zeros(0, bool)
    acc = lambda m: float(right[m].mean()) if m.any() else None  # noqa: E731
    return {"share": float(flag.mean()) if len(flag) else 0.0, "accuracy_flagged": acc(flag),
            "accuracy_unflagged": acc(~flag)}


def card_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The test figures a bundle's card keeps (``metrics.test`` of its config.json) from a report
    of :func:`evaluate_logits`."""
    return {**{k: report[k] for k in ("accuracy", "macro_f1", "weighted_f1", "uar", "n")},
            "ece": report["calibration"]["ece_after"], "uncertain": report["calibration"]["uncertain_after"],
            "per_corpus": {c: {k: round(v, 4) for k, v in m.items()} for c, m in report["per_corpus"].items()},
            "left_out": report["left_out"]}      # clips whose words give the emotion away


def evaluate_logits(utts: list[Utterance], logits: np.ndarray, labels: list[str],
                    temperature: float = 1.0, out_dir: str | os.PathLike | None = None,
                    title: str = "test", no_speech: np.ndarray | None = None,
                    force: bool = False, uncertain_below: float = UNCERTAIN_BELOW,
                    uncertain_margin: float = UNCERTAIN_MARGIN, about: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score ``logits`` (n, classes; uncalibrated) against the utterances' emotions.

    ``no_speech`` marks clips the scorer gave no emotion (no speech found): they count as wrong
    answers, are left out of calibration, and are counted under ``no_speech``.

    Utterances whose emotion the model does not know are counted under ``unknown_emotions`` and
    left out. So are clips whose words alone give their emotion away
    (:func:`serkit.corpora.words_give_label`, e.g. ASED's emotion-specific sentences): they are
    counted under ``left_out``, every figure is computed without them (``all_clips`` has the
    headline metrics with them), and ``predictions.csv`` lists them with ``Judged`` "no". If no
    other clip is left, every clip is judged and ``caveat`` says why. The answers flagged
    uncertain (as the scorer flags them, by ``uncertain_below`` and ``uncertain_margin``; see
    :func:`flag_figures`) are counted with and without the temperature. With ``out_dir``, writes
    report.json, report.md, predictions.csv and the plots (:data:`EVAL_FILES`) there: a new
    folder, an earlier evaluation's, or with ``force`` a folder holding other files (which stay).
    ``about`` (``model``, ``manifest``, ``notes``: what was scored, on what, and how far to trust
    the figures) is kept in the report and shown in report.md.
    """
    index = {l: i for i, l in enumerate(labels)}
    keep = np.array([u.emotion in index for u in utts], dtype=bool)
    unknown = dict(sorted(Counter(u.emotion for u in utts if u.emotion not in index).items()))
    utts = [u for u, k in zip(utts, keep) if k]
    none_all = np.zeros(len(utts), bool) if no_speech is None else np.asarray(no_speech, bool)[keep]
    if not utts:
        raise ValueError(f"no clip has an emotion the model knows ({', '.join(labels)})")
    y_all = np.array([index[u.emotion] for u in utts])
    probs_all = softmax(logits[keep] / temperature)
    pred_all = np.where(none_all, -1, probs_all.argmax(1))
    leaky = np.array([words_give_label(u) for u in utts], bool)
    judged = ~leaky if not leaky.all() else np.ones_like(leaky)     # as serkit.corpora.judged
    caveat = None
    if leaky.all():
        caveat = ("every clip's words give its emotion away (" + ", ".join(sorted({u.corpus for u in utts}))
                  + "): these figures may measure the words, not the voice")
    y, probs, pred, none = y_all[judged], probs_all[judged], pred_all[judged], none_all[judged]
    probs_raw = softmax(logits[keep][judged])
    scored = [u for u, j in zip(utts, judged) if j]
    cm = confusion_matrix(y, pred, labels=list(range(len(labels))))
    report: dict[str, Any] = {
        "split": title,
        "labels": labels,
        **metrics(y, pred),
        "classification_report": classification_report(
            y, pred, labels=list(range(len(labels))), target_names=labels, output_dict=True, zero_division=0),
        "confusion_matrix": cm.tolist(),
        "calibration": {"temperature": temperature,
                        "ece_before": expected_calibration_error(probs_raw[~none], y[~none]),
                        "ece_after": expected_calibration_error(probs[~none], y[~none]),
                        "uncertain_before": flag_figures(probs_raw[~none], y[~none], uncertain_below, uncertain_margin),
                        "uncertain_after": flag_figures(probs[~none], y[~none], uncertain_below, uncertain_margin)},
        "no_speech": int(none.sum()),
        "per_corpus": _breakdown([u.corpus for u in scored], y, pred),
        "per_speaker": _breakdown([u.group for u in scored], y, pred),
        "unknown_emotions": unknown,  # counted before the filter above
        "left_out": {"words_give_label": int((~judged).sum())},
    }
    if not judged.all():
        report["all_clips"] = metrics(y_all, pred_all)
    if caveat:
        report["caveat"] = caveat
    report.update(about or {})
    if out_dir is not None:
        out = claim_output_folder(out_dir, "eval", force=force, flag="--out")
        write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", markdown_report(report))
        plot_confusion(cm, labels, out / "confusion_counts.png", False, f"Confusion ({title}, counts)")
        plot_confusion(cm, labels, out / "confusion_normalized.png", True, f"Confusion ({title}, recall per row)")
        plot_reliability(probs_raw[~none], probs[~none], y[~none], out / "reliability.png")
        write_predictions(out / "predictions.csv", utts, labels, pred_all, probs_all, judged,
                          uncertain(probs_all, uncertain_below, uncertain_margin))
    return report


def write_predictions(path: Path, utts: list[Utterance], labels: list[str], pred: np.ndarray,
                      probs: np.ndarray, judged: np.ndarray, flags: np.ndarray) -> None:
    """One row per clip (``pred`` -1: no speech found), as a CSV that any path can sit in."""
    with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["File", "Dataset", "Speaker", "Emotion", "Predicted", "Confidence", "Uncertain", "Judged"])
        for u, p, pr, f, j in zip(utts, pred, probs, flags, judged):
            answer = [labels[p], f"{pr[p]:.4f}", "yes" if f else "no"] if p >= 0 else ["no speech", "", ""]
            w.writerow([str(u.path), u.corpus, u.speaker, u.emotion, *answer, "yes" if j else "no"])


def uncertain_lines(calibration: dict[str, Any]) -> list[str]:
    """The report's lines on the uncertain flag (none for a report written before it was counted)."""
    f = calibration.get("uncertain_after")
    if not f:
        return []
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    return [f"Flagged uncertain (as served, temperature {calibration['temperature']:.2f}): {pct(f['share'])} "
            f"of the answers; right {pct(f['accuracy_flagged'])} of the time when flagged, "
            f"{pct(f['accuracy_unflagged'])} otherwise.", ""]


def left_out_lines(r: dict[str, Any]) -> list[str]:
    """The report's lines on the clips it did not judge (none for older reports)."""
    n = (r.get("left_out") or {}).get("words_give_label", 0)
    lines = []
    if n:
        a = r.get("all_clips") or {}
        lines += [f"Left out of every figure: {n} clips whose words give their emotion away (their corpus's "
                  f"reader says so, e.g. ASED's sentences 03-07); with them, accuracy {a.get('accuracy', float('nan')):.3f}, "
                  f"UAR {a.get('uar', float('nan')):.3f} on {a.get('n')} clips.", ""]
    if r.get("caveat"):
        lines += [f"Caveat: {r['caveat']}.", ""]
    lines += [f"Note: {n}" for n in r.get("notes", [])] + ([""] if r.get("notes") else [])
    return lines


def markdown_report(r: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {r['split']} ({r['n']} clips)", "",
             *([f"Model {r['model']}, manifest {r['manifest']}.", ""] if r.get("model") else []),
             "| accuracy | macro-F1 | weighted F1 | UAR | ECE before | ECE after (T={:.2f}) |".format(
                 r["calibration"]["temperature"]),
             "|---|---|---|---|---|---|",
             f"| {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['weighted_f1']:.3f} | {r['uar']:.3f} "
             f"| {r['calibration']['ece_before']:.3f} | {r['calibration']['ece_after']:.3f} |", "",
             *uncertain_lines(r["calibration"]), *left_out_lines(r),
             "## Per class", "", "| emotion | precision | recall | F1 | clips |", "|---|---|---|---|---|"]
    for label in r["labels"]:
        c = r["classification_report"][label]
        lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1-score']:.3f} | {int(c['support'])} |")
    for key, title in (("per_corpus", "Per corpus"), ("per_speaker", "Per speaker")):
        lines += ["", f"## {title}", "", "| | clips | accuracy | macro-F1 | UAR |", "|---|---|---|---|---|"]
        for k, m in r[key].items():
            lines.append(f"| {k} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['uar']:.3f} |")
    lines += ["", "Confusion matrices: `confusion_counts.png`, `confusion_normalized.png`; "
              "calibration: `reliability.png`.", ""]
    return "\n".join(lines)


def plot_curves(metrics_csv: Path, out: Path) -> None:
    """Training curves (loss, validation UAR/accuracy per epoch) from Lightning's metrics.csv."""
    import csv

    rows = list(csv.DictReader(open(metrics_csv, encoding="utf-8")))
    series: dict[str, dict[int, float]] = {}
    for r in rows:
        for k, v in r.items():
            if v not in ("", None) and k not in ("epoch", "step"):
                series.setdefault(k, {})[int(r["epoch"])] = float(v)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for k in ("train_loss", "val_loss"):
        if k in series:
            a1.plot(list(series[k]), list(series[k].values()), label=k)
    for k in ("val_uar", "val_accuracy", "val_macro_f1"):
        if k in series:
            a2.plot(list(series[k]), list(series[k].values()), label=k)
    a1.set(xlabel="epoch", title="loss")
    a2.set(xlabel="epoch", title="validation", ylim=(0, 1))
    a1.legend()
    a2.legend()
    fig.tight_layout()

    save_figure(fig, out, 110)

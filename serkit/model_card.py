"""The model card ``serkit info`` prints: what a bundle is, what it was trained on, how good it is."""
from __future__ import annotations

import os
from pathlib import Path

from serkit.bundle import WEIGHTS, read_config
from serkit.inference import default_model_path


def model_card(bundle: str | os.PathLike | None = None) -> str:
    folder = Path(bundle) if bundle is not None else default_model_path()
    c = read_config(folder)
    training = c.get("training", {})
    tcfg, data = training.get("config", {}), training.get("data", {})
    test = c.get("metrics", {}).get("test", {})
    size_mb = (folder / WEIGHTS).stat().st_size / 1e6 if (folder / WEIGHTS).is_file() else 0.0
    # nested settings (a fine-tuned encoder's whole backbone config) would drown the card
    arch = ", ".join(f"{k}={v}" for k, v in c["model_config"].items() if not isinstance(v, dict))
    lines = [
        f"Model card: {folder}",
        f"  model type     {c['model_type']} ({size_mb:.1f} MB of weights, bundle format {c['format_version']}, "
        f"serkit {c.get('serkit_version', '?')})",
        f"  architecture   {arch}",
        f"  labels         {', '.join(c['labels'])}",
        f"  audio          {c['audio']['sample_rate']} Hz mono, {c['audio']['clip_seconds']} s windows "
        "(longer clips: 50% overlapping windows, probabilities averaged)",
        f"  calibration    temperature {c.get('temperature', 1.0):.3f} (fitted on the validation split)",
    ]
    if data:
        lines += [
            f"  training data  {', '.join(data.get('corpora', []))}: {data.get('clips')} clips, "
            f"{data.get('speakers')} speakers, {data.get('hours')} h",
            f"  split          {tcfg.get('split')} (seed {tcfg.get('seed')}; test {tcfg.get('test_size')}, "
            f"val {tcfg.get('val_size')}); "
            + ", ".join(f"{p} {v['clips']} clips/{v['speakers']} speakers" for p, v in data.get("parts", {}).items()),
            f"  best epoch     {training.get('best_epoch')} of {training.get('epochs_run')} "
            f"(chosen on validation {tcfg.get('monitor')} = {training.get('best_score', 0):.3f})",
        ]
        if tcfg.get("split") == "random":
            lines.append("  WARNING        random split: test speakers were also in training, metrics are inflated")
    if test:
        lines.append(f"  test metrics   accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f}, "
                     f"UAR {test['uar']:.3f}, ECE {test.get('ece', float('nan')):.3f} ({test['n']} clips, held-out speakers)")
        for corpus, m in test.get("per_corpus", {}).items():
            lines.append(f"                 {corpus}: accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f} ({m['n']} clips)")
    if c.get("licence"):
        lines.append(f"  licence        {c['licence']}")
    return "\n".join(lines)

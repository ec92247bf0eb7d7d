"""The model card ``serkit info`` prints: what a bundle is, what it was trained on, how good it is."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serkit.bundle import WEIGHTS, read_config
from serkit.inference import default_model_path


def _obj(value: Any) -> dict[str, Any]:
    """A config section as a dict ({} when a hand-edited config holds something else there)."""
    return value if isinstance(value, dict) else {}


def _num(value: Any, spec: str = ".3f") -> str:
    """A number formatted by ``spec``; what is not a number is shown as it is."""
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def model_card(bundle: str | os.PathLike | None = None) -> str:
    folder = Path(bundle) if bundle is not None else default_model_path()
    c = read_config(folder)
    training = _obj(c.get("training"))
    tcfg, data = _obj(training.get("config")), _obj(training.get("data"))
    test = _obj(_obj(c.get("metrics")).get("test"))
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
        f"  calibration    temperature {_num(c.get('temperature', 1.0))} (fitted on the validation split)",
    ]
    if data:
        lines += [
            f"  training data  {', '.join(map(str, data.get('corpora') or []))}: {data.get('clips')} clips, "
            f"{data.get('speakers')} speakers, {data.get('hours')} h",
            f"  split          {tcfg.get('split')} (seed {tcfg.get('seed')}; test {tcfg.get('test_size')}, "
            f"val {tcfg.get('val_size')}); "
            + ", ".join(f"{p} {_obj(v).get('clips')} clips/{_obj(v).get('speakers')} speakers"
                        for p, v in _obj(data.get("parts")).items()),
            f"  best epoch     {training.get('best_epoch')} of {training.get('epochs_run')} "
            f"(chosen on validation {tcfg.get('monitor')} = {_num(training.get('best_score', 0))})",
        ]
        if tcfg.get("split") == "random":
            lines.append("  WARNING        random split: test speakers were also in training, metrics are inflated")
    if test:
        lines.append(f"  test metrics   accuracy {_num(test.get('accuracy'))}, macro-F1 {_num(test.get('macro_f1'))}, "
                     f"UAR {_num(test.get('uar'))}, ECE {_num(test.get('ece', float('nan')))} ({test.get('n')} clips, "
                     "held-out speakers)")
        for corpus, m in _obj(test.get("per_corpus")).items():
            m = _obj(m)
            lines.append(f"                 {corpus}: accuracy {_num(m.get('accuracy'))}, UAR {_num(m.get('uar'))} "
                         f"({m.get('n')} clips)")
    if c.get("licence"):
        lines.append(f"  licence        {c['licence']}")
    return "\n".join(lines)

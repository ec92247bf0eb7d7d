"""What a bundle's ``config.json`` may hold: one schema, checked before anything is built.

A bundle may come from anywhere, so its config is input like any other: every key the loader
uses is checked for its type and for bounds that keep a tampered or broken config from
allocating petabytes, dividing by zero or failing deep inside torch. Types of ``model_config``
fields come from the model's config dataclass (``int``, ``float``, ``str``, ``bool``,
``list[int]``, ``... | None``); the bounds are declared here, per model type. Fields a config
leaves out take the dataclass's defaults, and unknown fields are ignored (as
:func:`serkit.bundle.build_model` does), so older and newer bundles still load.

Every problem raises :class:`~serkit.bundle.BundleError` naming the file and the key, e.g.
``runs/x/bundle/config.json: model_config.lstm_hidden: 96.5 is not an integer``.
"""
from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 4 * 1024 * 1024   # a bundle's config.json is a few kB (a fine-tuned Whisper's: ~30 kB)
MIN_RATE, MAX_RATE = 4000, 192000    # Hz, as the web app accepts uploads
MAX_CLIP_SECONDS = 60.0              # the model window
MAX_LABELS = 1000
MAX_LABEL_CHARS = 100
MAX_STR_CHARS = 4096
MAX_N_FFT = 4096                     # the DFT basis kept for ONNX export is (n_fft / 2 + 1) x n_fft floats
#: Parameters a bundle's architecture may have (float32: 4 bytes each); the shipped CNN-LSTM has ~0.4 M,
#: Whisper-large's encoder ~0.64 G.
MAX_PARAMETERS = {"cnn_lstm": 200_000_000, "pretrained": 2_000_000_000}
MAX_WINDOW_VALUES = 2 ** 27          # floats of the largest activation one window makes (512 MiB)
#: Encoder families a fine-tuned bundle may rebuild from its stored ``backbone_config``
#: (the families :mod:`serkit.models.pretrained` runs).
BACKBONE_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech",
                  "unispeech-sat", "sew", "sew-d", "whisper")
#: Nested settings (``backbone_config``, ``feature_config``): depth, items and the largest number.
MAX_NESTED_DEPTH, MAX_NESTED_ITEMS, MAX_NESTED_INT = 8, 200_000, 10_000_000
MAX_MEMBERS, MEMBER_TYPES = 8, ("cnn_lstm",)   # an ensemble's models, and the kinds it may hold


@dataclass(frozen=True)
class Rule:
    """Bounds of one setting: ``lo <= value <= hi`` (``lo < value`` with ``lo_open``), a list's
    length at most ``max_len``, a string matching ``pattern``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    max_len: int = MAX_STR_CHARS
    pattern: str | None = None


SIZE = Rule(1, 4096)
RATE = Rule(MIN_RATE, MAX_RATE)
SHARE = Rule(0.0, 1.0, hi_open=True)          # dropout and the like
MASKS, TEMPERATURE = Rule(0, 1000), Rule(1e-3, 1e3)

#: Bounds of ``model_config`` fields per model type; a field without a rule is only type-checked.
RULES: dict[str, dict[str, Rule]] = {
    "cnn_lstm": {
        "n_classes": Rule(1, MAX_LABELS), "sample_rate": RATE, "n_fft": Rule(16, MAX_N_FFT),
        "win_length": Rule(1, MAX_N_FFT), "hop_length": Rule(1, MAX_N_FFT), "n_mels": Rule(1, 512),
        "channels": Rule(1, 2048, max_len=16), "lstm_hidden": SIZE, "dropout": SHARE,
        "freq_masks": MASKS, "freq_mask_width": MASKS, "time_masks": MASKS, "time_mask_width": MASKS,
    },
    "pretrained": {
        "n_classes": Rule(1, MAX_LABELS), "sample_rate": RATE, "clip_seconds": Rule(0, MAX_CLIP_SECONDS, lo_open=True),
        "backbone": Rule(max_len=MAX_STR_CHARS), "revision": Rule(pattern=r"(?!.*\.\.)[A-Za-z0-9._/-]{1,256}"),
        "checksum": Rule(pattern=r"sha256:[0-9a-f]{64}"), "freeze": Rule(max_len=32),
        "layer": Rule(-1024, 1024), "max_layers": Rule(1, 1024), "head_hidden": Rule(0, 65536),
        "dropout": SHARE, "encoder_lr": Rule(0, 10, lo_open=True),
    },
    "ensemble": {"n_classes": Rule(1, MAX_LABELS), "members": Rule(max_len=MAX_MEMBERS)},
}

#: Size settings inside a fine-tuned bundle's ``backbone_config`` / ``feature_config``.
NESTED_RULES: dict[str, Rule] = {
    "hidden_size": Rule(1, 16384), "d_model": Rule(1, 16384), "intermediate_size": Rule(1, 65536),
    "encoder_ffn_dim": Rule(1, 65536), "decoder_ffn_dim": Rule(1, 65536),
    "num_hidden_layers": Rule(1, 256), "encoder_layers": Rule(1, 256), "decoder_layers": Rule(0, 256),
    "num_attention_heads": Rule(1, 256), "encoder_attention_heads": Rule(1, 256),
    "decoder_attention_heads": Rule(1, 256), "vocab_size": Rule(1, 1_000_000),
    "num_mel_bins": Rule(1, 512), "feature_size": Rule(1, 512), "max_source_positions": Rule(1, 100_000),
    "max_target_positions": Rule(1, 100_000), "num_conv_pos_embeddings": Rule(1, 4096),
    "conv_dim": Rule(1, 8192, max_len=32), "conv_kernel": Rule(1, 4096, max_len=32),
    "conv_stride": Rule(1, 4096, max_len=32), "n_fft": Rule(16, MAX_N_FFT), "hop_length": Rule(1, MAX_N_FFT),
    "sampling_rate": RATE,
}


class SchemaError(ValueError):
    """One problem with one key (the loader adds the file's name)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def validate_config(config: Any, source: str | Path, registry: dict[str, type]) -> dict[str, Any]:
    """Check a parsed config.json; returns it unchanged or raises BundleError naming ``source``.

    ``registry`` maps each known model type to its config dataclass.
    """
    from serkit.errors import BundleError

    try:
        check_config(config, registry)
    except SchemaError as exc:
        raise BundleError(f"{source}: {exc}") from None
    return config


def check_config(config: Any, registry: dict[str, type]) -> None:
    """:func:`validate_config` without the file name: raises :class:`SchemaError`."""
    if not isinstance(config, dict):
        raise SchemaError("config", f"is a JSON {_json_type(config)}, not an object")
    for key in ("model_type", "model_config", "labels", "audio"):
        if key not in config:
            raise SchemaError(key, "missing")
    model_type = config["model_type"]
    if not isinstance(model_type, str) or model_type not in registry:
        raise SchemaError("model_type", f"unknown model type {_short(model_type)}; this serkit knows "
                          f"{', '.join(registry)}")
    check_labels(config["labels"])
    audio = config["audio"]
    if not isinstance(audio, dict):
        raise SchemaError("audio", f"is a JSON {_json_type(audio)}, not an object")
    for key in ("sample_rate", "clip_seconds"):
        if key not in audio:
            raise SchemaError(f"audio.{key}", "missing")
    check_value("audio.sample_rate", audio["sample_rate"], int, RATE)
    check_value("audio.clip_seconds", audio["clip_seconds"], float, Rule(0, MAX_CLIP_SECONDS, lo_open=True))
    if "temperature" in config:
        check_value("temperature", config["temperature"], float, TEMPERATURE)
    for key in ("training", "metrics"):
        if key in config and not isinstance(config[key], dict):
            raise SchemaError(key, f"is a JSON {_json_type(config[key])}, not an object")
    if "onnx" in config:
        check_onnx(config["onnx"])
    model_config = config["model_config"]
    if not isinstance(model_config, dict):
        raise SchemaError("model_config", f"is a JSON {_json_type(model_config)}, not an object")
    check_model_config(model_type, model_config, registry[model_type], audio, registry)


def check_labels(labels: Any) -> None:
    if not isinstance(labels, list) or not labels:
        raise SchemaError("labels", "must be a non-empty list of names")
    if len(labels) > MAX_LABELS:
        raise SchemaError("labels", f"{len(labels)} labels; at most {MAX_LABELS}")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS \
                or not label.isprintable():
            raise SchemaError(f"labels[{i}]", f"{_short(label)} is not a label name "
                              f"(printable text, 1 to {MAX_LABEL_CHARS} characters)")
    if len(set(labels)) != len(labels):
        twice = sorted({label for label in labels if labels.count(label) > 1})
        raise SchemaError("labels", f"{', '.join(twice)} appear more than once")


def check_onnx(info: Any) -> None:
    """An export's ``onnx`` section: its model files are plain names inside the export folder."""
    if not isinstance(info, dict):
        raise SchemaError("onnx", f"is a JSON {_json_type(info)}, not an object")
    files = info.get("files", {})
    if not isinstance(files, dict):
        raise SchemaError("onnx.files", "must map a precision to a file name")
    for precision, name in files.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", name):
            raise SchemaError(f"onnx.files.{precision}", f"{_short(name)} is not a file name inside the export")
    if "default" in info and not isinstance(info["default"], str):
        raise SchemaError("onnx.default", "must be a precision name")


def check_model_config(model_type: str, model_config: dict[str, Any], config_cls: type,
                       audio: dict[str, Any], registry: dict[str, type]) -> None:
    hints = typing.get_type_hints(config_cls)
    rules = RULES.get(model_type, {})
    for f in fields(config_cls):
        if f.name in model_config:
            check_value(f"model_config.{f.name}", model_config[f.name], hints[f.name], rules.get(f.name))
    merged = {f.name: model_config.get(f.name, getattr(config_cls, "LEGACY", {}).get(f.name, _default(f)))
              for f in fields(config_cls)}
    if model_type == "cnn_lstm":
        check_cnn_lstm_cost(merged, audio)
    elif model_type == "pretrained":
        for key in ("backbone_config", "feature_config"):
            if merged.get(key) is not None:
                check_nested(f"model_config.{key}", merged[key])
        check_backbone_config(merged.get("backbone_config"))
    elif model_type == "ensemble":
        check_members(merged, audio, registry)


def check_members(c: dict[str, Any], audio: dict[str, Any], registry: dict[str, type]) -> None:
    """An ensemble's members (1 to MAX_MEMBERS), each checked as its own bundle's config is, with the ensemble's outputs."""
    for i, m in enumerate(c["members"]):
        key, kind, mc = f"model_config.members[{i}]", m.get("model_type"), m.get("model_config")
        if kind not in MEMBER_TYPES:
            raise SchemaError(f"{key}.model_type", f"{_short(kind)}: an ensemble holds {', '.join(MEMBER_TYPES)} models")
        try:
            check_value("model_config", mc, dict)
            check_value("temperature", m.get("temperature", 1.0), float, TEMPERATURE)
            check_model_config(kind, mc, registry[kind], audio, registry)
            if mc.get("n_classes", registry[kind].n_classes) != c["n_classes"]:
                raise SchemaError("model_config.n_classes", f"{mc.get('n_classes')} outputs in an ensemble of {c['n_classes']}")
        except SchemaError as exc:
            raise SchemaError(f"{key}.{exc.key}", exc.problem) from None


def check_cnn_lstm_cost(c: dict[str, Any], audio: dict[str, Any]) -> None:
    """The CNN-LSTM's parameters and the largest activation of one window, from its settings."""
    if c["win_length"] > c["n_fft"]:
        raise SchemaError("model_config.win_length", f"{c['win_length']} is longer than n_fft ({c['n_fft']})")
    samples = audio["clip_seconds"] * c["sample_rate"]
    frames, mels = samples / c["hop_length"] + 1, c["n_mels"]
    largest = frames * (c["n_fft"] // 2 + 1)                       # the spectrogram of one window
    params, cin = 0, 1
    for i, cout in enumerate(c["channels"]):
        frames, mels = math.ceil(frames / 2), math.ceil(mels / 2)  # every block halves both
        largest = max(largest, cout * frames * mels)
        params += 9 * cin * cout + 4 * cout
        cin = cout
    hidden = c["lstm_hidden"]
    params += 8 * hidden * (cin * mels + hidden + 2) + 2 * hidden * (c["n_classes"] + 1)
    if params > MAX_PARAMETERS["cnn_lstm"]:
        raise SchemaError("model_config", f"these sizes make {params:.3g} parameters; a CNN-LSTM bundle "
                          f"may have at most {MAX_PARAMETERS['cnn_lstm']:.0e}")
    if largest > MAX_WINDOW_VALUES:
        raise SchemaError("model_config", f"one {audio['clip_seconds']:g} s window would make {largest:.3g} "
                          f"values in one layer (hop_length, n_fft, n_mels, channels); at most {MAX_WINDOW_VALUES:.3g}")


def check_backbone_config(bc: dict[str, Any] | None) -> None:
    """A fine-tuned bundle's encoder settings: a known family, and a bounded size."""
    if bc is None:
        return
    kind = bc.get("model_type")
    if kind not in BACKBONE_TYPES:
        raise SchemaError("model_config.backbone_config.model_type",
                          f"{_short(kind)} is not an encoder family serkit runs ({', '.join(BACKBONE_TYPES)})")
    hidden = bc.get("hidden_size") or bc.get("d_model") or 768
    ffn = bc.get("intermediate_size") or bc.get("encoder_ffn_dim") or 4 * hidden
    layers = bc.get("num_hidden_layers") or bc.get("encoder_layers") or 12
    params = layers * (4 * hidden * hidden + 2 * hidden * ffn) + bc.get("vocab_size", 0) * hidden
    if params > MAX_PARAMETERS["pretrained"]:
        raise SchemaError("model_config.backbone_config", f"these sizes make about {params:.3g} encoder "
                          f"parameters; at most {MAX_PARAMETERS['pretrained']:.0e}")


def check_nested(key: str, value: Any) -> None:
    """Free-form settings: bounded depth, item count and numbers, known size keys within bounds."""
    count = 0

    def walk(k: str, v: Any, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > MAX_NESTED_DEPTH or count > MAX_NESTED_ITEMS:
            raise SchemaError(key, f"nested deeper than {MAX_NESTED_DEPTH} or more than {MAX_NESTED_ITEMS} items")
        name = k.rsplit(".", 1)[-1]
        if name in NESTED_RULES and v is not None:
            rule = NESTED_RULES[name]
            check_value(k, v, list[int] if isinstance(v, list) else int, rule)
        if isinstance(v, dict):
            for kk, vv in v.items():
                walk(f"{k}.{kk}", vv, depth + 1)
        elif isinstance(v, list):
            for i, vv in enumerate(v):
                walk(f"{k}[{i}]", vv, depth + 1)
        elif isinstance(v, bool) or v is None:
            return
        elif isinstance(v, int) and abs(v) > MAX_NESTED_INT:
            raise SchemaError(k, f"{v} is out of range (at most {MAX_NESTED_INT:,} in size)")
        elif isinstance(v, float) and not math.isfinite(v):
            raise SchemaError(k, f"{v} is not a finite number")
        elif isinstance(v, str) and len(v) > MAX_STR_CHARS:
            raise SchemaError(k, f"a string of {len(v)} characters (at most {MAX_STR_CHARS})")

    if not isinstance(value, dict):
        raise SchemaError(key, f"is a JSON {_json_type(value)}, not an object")
    walk(key, value, 0)


# ------------------------------------------------------------------------------- one value

def check_value(key: str, value: Any, hint: Any, rule: Rule | None = None) -> None:
    """``value`` has the type ``hint`` (a dataclass field type) and keeps within ``rule``."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None:
        if type(None) in options:
            return
        raise SchemaError(key, "is null; " + _expected(options))
    problems = []
    for option in options:
        if option is type(None):
            continue
        problem = _check_one(value, option, rule)
        if problem is None:
            return
        problems.append(problem)
    if len(problems) == 1:
        raise SchemaError(key, problems[0])
    raise SchemaError(key, f"{_short(value)} is {_article(_json_type(value))}; {_expected(options)}")


def _check_one(value: Any, hint: Any, rule: Rule | None) -> str | None:
    """None when ``value`` fits ``hint`` and ``rule``, else what is wrong."""
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            return f"{_short(value)} is not a list"
        limit = rule.max_len if rule else 64
        if not 1 <= len(value) <= limit:
            return f"a list of {len(value)} items; give 1 to {limit}"
        (item,) = typing.get_args(hint) or (Any,)
        for i, v in enumerate(value):
            problem = _check_one(v, item, rule)
            if problem:
                return f"item {i}: {problem}"
        return None
    if origin is dict or hint is dict:
        return None if isinstance(value, dict) else f"{_short(value)} is not an object"
    if hint is Any:
        return None
    if hint is bool:
        return None if isinstance(value, bool) else f"{_short(value)} is not true or false"
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{_short(value)} is not an integer"
        return _in_range(value, rule)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{_short(value)} is not a number"
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        return _in_range(value, rule)
    if hint is str:
        if not isinstance(value, str):
            return f"{_short(value)} is not a string"
        limit = rule.max_len if rule else MAX_STR_CHARS
        if len(value) > limit:
            return f"a string of {len(value)} characters (at most {limit})"
        if rule and rule.pattern and not re.fullmatch(rule.pattern, value):
            return f"{_short(value)} is not of the form {rule.pattern}"
        return None
    return None   # a type this schema does not know: the model's own checks decide


def _in_range(value: float, rule: Rule | None) -> str | None:
    if rule is None:
        return None
    low_bad = rule.lo is not None and (value <= rule.lo if rule.lo_open else value < rule.lo)
    high_bad = rule.hi is not None and (value >= rule.hi if rule.hi_open else value > rule.hi)
    if low_bad or high_bad:
        lo = "" if rule.lo is None else f"{'>' if rule.lo_open else '>='} {rule.lo:g}"
        hi = "" if rule.hi is None else f"{'<' if rule.hi_open else '<='} {rule.hi:g}"
        return f"{_short(value)} is out of range (give a value {' and '.join(p for p in (lo, hi) if p)})"
    return None


def _default(f: Any) -> Any:
    from dataclasses import MISSING

    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _expected(options: tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object"}
    wanted = [names.get(o, names.get(typing.get_origin(o), "a list" if typing.get_origin(o) is list else str(o)))
              for o in options if o is not type(None)]
    if type(None) in options:
        wanted.append("null")
    return "expected " + " or ".join(wanted)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"

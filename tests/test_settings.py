"""The CLI's settings: dataclasses (serkit.config) whose fields generate the options
(serkit.settings), checked on the way in, from the command line and from Python alike."""
from __future__ import annotations

import argparse
import json
import sys
import types
from dataclasses import dataclass, fields

import pytest

import serkit.cli as cli
from serkit.bundle_schema import Rule
from serkit.config import PredictSettings, ServeSettings, TrainConfig
from serkit.settings import add_dataclass_arguments, dataclass_from_args, setting

COMMANDS = {"train": TrainConfig, "predict": PredictSettings, "serve": ServeSettings}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_settings_field_is_an_option_of_its_command(command):
    parser = subparsers(cli.build_parser())[command]
    dests = {a.dest for a in parser._actions}
    missing = {f.name for f in fields(COMMANDS[command])} - dests
    assert not missing, f"serkit {command} has no option for {sorted(missing)}"


@dataclass
class Example:
    """Every kind of field the generator turns into an option."""

    count: int = setting(3, "how many", rule=Rule(1, 10))
    ratio: float | None = setting(None, "a share", rule=Rule(0, 1, lo_open=True))
    colour: str = setting("red", "a colour", choices=("red", "green"))
    loud: bool = setting(True, "loudly")
    quiet: bool = setting(False, "quietly", flags=("--quiet", "-q"))
    names: list[str] | None = setting(None, "comma list")
    sizes: list[int] = setting(default_factory=lambda: [1, 2], help="numbers")
    paths: list[str] | None = setting(None, "repeated", flags=("--path",), repeat=True)
    extra: dict = setting(default_factory=dict, help="JSON")


def test_a_field_becomes_a_typed_option():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Example)
    assert dataclass_from_args(Example, parser.parse_args([])) == Example()
    args = parser.parse_args(["--count", "7", "--ratio", "0.5", "--colour", "green", "--no-loud", "-q",
                              "--names", "a, b", "--sizes", "4,5", "--path", "x", "--path", "y,z",
                              "--extra", '{"k": [1]}'])
    assert dataclass_from_args(Example, args) == Example(
        count=7, ratio=0.5, colour="green", loud=False, quiet=True, names=["a", "b"], sizes=[4, 5],
        paths=["x", "y,z"], extra={"k": [1]})
    assert dataclass_from_args(Example, parser.parse_args(["--loud"]), count=2) == Example(count=2)


@pytest.mark.parametrize("argv, message", [
    (["--count", "11"], "argument --count: 11 is out of range"),
    (["--count", "2.5"], "argument --count: '2.5' is not an integer"),
    (["--ratio", "0"], "argument --ratio: 0.0 is out of range"),
    (["--colour", "blue"], "argument --colour: invalid choice: 'blue'"),
    (["--sizes", "1,x"], "argument --sizes: '1,x' is not an integer"),
    (["--extra", "[1]"], "argument --extra: '[1]' is not a JSON object"),
    (["--extra", "{x"], "argument --extra: '{x' is not JSON"),
])
def test_a_bad_value_is_a_usage_error(argv, message, capsys):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Example)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_settings_built_in_python_are_checked_as_the_options_are():
    for make, needles in [(lambda: TrainConfig(lr=-1), ("TrainConfig.lr: -1 is out of range", "(--lr)")),
                          (lambda: TrainConfig(epochs="3"), ("TrainConfig.epochs: '3' is not an integer",)),
                          (lambda: TrainConfig(monitor="loss"), ("unknown monitor 'loss' (--monitor); choose",)),
                          (lambda: ServeSettings(port=70000), ("ServeSettings.port: 70000 is out of range",)),
                          (lambda: ServeSettings(threads=0), ("ServeSettings.threads: 0 is out of range",)),
                          (lambda: PredictSettings(format="xml"), ("unknown format 'xml' (--format)",))]:
        with pytest.raises(ValueError) as info:
            make()
        assert all(n in str(info.value) for n in needles), str(info.value)


@pytest.fixture
def fake_train(monkeypatch):
    """``serkit train`` with training replaced: the config it would train with (no torch needed)."""
    seen = {}
    fake = types.ModuleType("serkit.training")
    fake.train = lambda manifest, out, cfg, resume=False, force=False: seen.update(cfg=cfg, resume=resume) or {}
    monkeypatch.setitem(sys.modules, "serkit.training", fake)
    return seen


def test_train_options_round_trip_to_the_config(fake_train, tmp_path):
    run = ["train", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run")]
    assert cli.main(run) == 0
    assert fake_train["cfg"] == TrainConfig() and fake_train["resume"] is False
    assert cli.main([*run, "--model", "pretrained", "--emotions", "sad,angry", "--split", "corpus",
                     "--test-corpus", "emodb", "--test-size", "0.3", "--val-size", "0.1", "--seed", "7",
                     "--epochs", "5", "--patience", "2", "--monitor", "val_macro_f1", "--batch-size", "8",
                     "--lr", "0.01", "--weight-decay", "0", "--label-smoothing", "0.1", "--no-class-weights",
                     "--balance-corpora", "--no-corpus-label-mask", "--no-augment", "--no-speed-perturb",
                     "--mixup", "0.4", "--clip-seconds", "2.5", "--vad", "energy",
                     "--model-options", json.dumps({"head_hidden": 0}), "--pooling", "stats", "--last-layer",
                     "--accelerator", "gpu", "--devices", "auto", "--num-nodes", "2", "--strategy", "ddp",
                     "--num-workers", "3", "--cache-dir", "", "--no-progress", "--resume"]) == 0
    assert fake_train["cfg"] == TrainConfig(
        model="pretrained", emotions=["angry", "sad"], split="corpus", test_corpus="emodb", test_size=0.3,
        val_size=0.1, seed=7, epochs=5, patience=2, monitor="val_macro_f1", batch_size=8, lr=0.01,
        weight_decay=0.0, label_smoothing=0.1, class_weights=False, balance_corpora=True,
        corpus_label_mask=False, augment=False, speed_perturb=False, mixup=0.4, clip_seconds=2.5, vad="energy",
        model_options={"head_hidden": 0, "pooling": "stats", "layer_weights": False}, accelerator="gpu",
        devices="auto", num_nodes=2, strategy="ddp", num_workers=3, cache_dir="", progress=False)
    assert fake_train["resume"] is True


@pytest.mark.parametrize("argv", [["--lr", "-0.1"], ["--epochs", "x"], ["--emotions", "angry,grumpy"],
                                  ["--model-options", "{bad"], ["--monitor", "loss"], ["--test-size", "1"],
                                  ["--model", "transformer"], ["--batch-size", "0"]])
def test_a_bad_train_value_is_one_line_exit_2_and_writes_nothing(argv, tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,emotion\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: argument {argv[0]}"), err
    assert err.rstrip().endswith("(see serkit train --help)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_serve_help_shows_the_serve_settings_help_and_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in fields(ServeSettings):
        assert " ".join(f.metadata["help"].split()) in text, f.name
    assert "request threads (default: 4)" in text and "(default: 127.0.0.1)" in text
    assert "--quiet, --no-quiet, -q" in text and "--model [NAME=]BUNDLE, -m [NAME=]BUNDLE" in text


def test_the_serve_options_table_in_docs_matches_serve_settings():
    """docs/web.md lists every option of ``serkit serve`` with its default: the ones ServeSettings has."""
    from pathlib import Path

    from serkit.settings import flag_of

    docs = Path(__file__).resolve().parents[1] / "docs" / "web.md"
    rows = {}
    for line in docs.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `--"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`").split(",")[0].split()[0]] = cells[1].strip("`")
    for f in fields(ServeSettings):
        flag = flag_of(f)
        assert flag in rows, f"docs/web.md does not list {flag}"
        if isinstance(f.default, bool):
            assert rows[flag] == ("on" if f.default else "off"), flag
        elif isinstance(f.default, (int, float)):
            assert float(rows[flag]) == f.default, flag
        elif isinstance(f.default, str):
            assert rows[flag] == f.default, flag
    assert set(rows) == {flag_of(f) for f in fields(ServeSettings)}


def test_pretrained_shortcuts_come_from_the_model_config(fake_train, tmp_path, capsys):
    """--backbone, --freeze, --pooling, --[no-]layer-weights, --encoder-lr are PretrainedConfig's
    fields: their help is the field's, and only the ones given reach model_options."""
    from serkit.cli.train import PRETRAINED_SHORTCUTS
    from serkit.models.configs import PretrainedConfig

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = "".join(capsys.readouterr().out.split())      # argparse wraps lines, also after hyphens
    by_name = {f.name: f for f in fields(PretrainedConfig)}
    for name in PRETRAINED_SHORTCUTS:
        assert "".join(by_name[name].metadata["help"].split()) in text, name
    run = ["train", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"), "--model", "pretrained"]
    assert cli.main([*run, "--freeze", "top:2", "--no-layer-weights", "--encoder-lr", "1e-4"]) == 0
    assert fake_train["cfg"].model_options == {"freeze": "top:2", "layer_weights": False, "encoder_lr": 1e-4}
    assert cli.main(run) == 0 and fake_train["cfg"].model_options == {}
    assert cli.main([*run[:-2], "--pooling", "stats"]) == 2        # a shortcut without --model pretrained

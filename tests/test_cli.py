"""What the CLI shows a person: help, the model card, the prepare summary, the serve access log."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
import torch
from rich.console import Console

import serkit.cli as cli
from serkit.bundle import save_bundle
from serkit.manifest import Utterance
from serkit.models.cnn_lstm import CNNLSTM, CNNLSTMConfig
from synth import EMOTIONS, SR


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_has_help_and_shows_its_default():
    for name, p in subparsers(cli.build_parser()).items():
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"serkit {name} {action.option_strings[0]} has no help"
            if action.default is not None and action.default is not False and action.nargs != 0 \
                    and action.default != []:
                shown = p._get_formatter()._get_help_string(action) % {"default": action.default}
                assert "default" in shown, f"serkit {name} {action.option_strings[0]} hides its default"
        if name == "predict":
            assert "per model call (default: 32)" in text and "(0: in this process) (default: 0)" in text


def test_main_help_has_examples_and_evaluate_usage_reads(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "serkit predict my.wav" in out and "serkit serve" in out
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.endswith("[BUNDLE] MANIFEST") and "[[BUNDLE]" not in usage


@pytest.fixture
def card_bundle(tmp_path):
    torch.manual_seed(0)
    model = CNNLSTM(CNNLSTMConfig(n_classes=3, channels=[4, 8, 8], lstm_hidden=16)).eval()
    training = {"config": {"split": "speaker", "seed": 0, "test_size": 0.2, "val_size": 0.15, "monitor": "val_uar"},
                "data": {"corpora": ["emodb", "ravdess"], "clips": 100, "speakers": 30, "hours": 0.1,
                         "parts": {"train": {"clips": 70, "speakers": 20}, "test": {"clips": 30, "speakers": 6}},
                         "test_speakers": ["emodb/11", "ravdess/03", "ravdess/09"],
                         "val_speakers": ["ravdess/05"]},
                "best_epoch": 3, "epochs_run": 5, "best_score": 0.5}
    return save_bundle(tmp_path / "bundle", model, list(EMOTIONS), {"sample_rate": SR, "clip_seconds": 0.5},
                       training=training, licence="Trained on data under these terms, which the weights "
                       "inherit: a long sentence that certainly needs more than one line at eighty columns.")


def test_info_names_the_held_out_speakers_and_wraps_under_its_values(card_bundle, capsys, monkeypatch):
    monkeypatch.setattr(cli.common, "console", Console(width=80, color_system=None))
    assert cli.main(["info", str(card_bundle)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Model card: {card_bundle}"
    assert all(ln.startswith("  ") and len(ln) <= 80 for ln in lines[1:])      # nothing back at column 0
    text = " ".join(" ".join(lines).split())
    assert "never heard emodb 11*.wav; ravdess Actor_03, Actor_09" in text and "try their clips" in text
    assert "not trained on ravdess Actor_05" in text
    licence = [i for i, ln in enumerate(lines) if "licence" in ln][0]
    assert len(lines) > licence + 1 and lines[licence + 1].startswith(" " * 17)   # wrapped under the value


def utterances(emotions: list[str]) -> list[Utterance]:
    return [Utterance(path=Path(f"{c}/{s}/{e}{i}.wav"), corpus=c, emotion=e, speaker=str(s), duration=2.0)
            for c in ("emodb", "ravdess") for s in range(3) for e in emotions for i in range(2)]


@pytest.mark.parametrize("emotions", [["angry", "happy", "sad", "fearful", "disgust", "neutral"],
                                      ["angry", "boredom", "calm", "disgust", "fearful", "happy", "neutral",
                                       "sad", "surprised"]], ids=["six", "nine"])
def test_prepare_summary_keeps_every_header_whole_at_80_columns(emotions):
    from serkit.prepare import summary_table

    console = Console(width=80, color_system=None, record=True)
    console.print(summary_table(utterances(emotions), console.width))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for word in [*emotions, "emodb", "ravdess", "total", "clips", "speakers", "hours"]:
        assert word in text
    assert str(6 * len(emotions)) in text.split() and str(12 * len(emotions)) in text.split()  # clips, whole


def test_serve_access_log_names_every_request_with_status_and_time(caplog):
    from flask import Flask, abort

    from serkit.web.serve import AccessLog

    app = Flask(__name__)
    app.add_url_rule("/ok", "ok", lambda: "fine")
    app.add_url_rule("/bad", "bad", lambda: abort(415), methods=["POST"])
    app.wsgi_app = AccessLog(app.wsgi_app)
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="serkit.access"):
        for response, status in ((client.get("/ok?model=x"), 200), (client.post("/bad"), 415)):
            assert response.status_code == status
            response.close()           # as a WSGI server does once the body is sent
    ok, bad = caplog.records
    assert ok.levelno == logging.INFO and '"GET /ok?model=x" 200 4 B' in ok.getMessage()
    assert bad.levelno == logging.WARNING and '"POST /bad" 415' in bad.getMessage()
    assert bad.getMessage().endswith(" ms")


def test_serve_quiet_turns_the_access_log_off(monkeypatch):
    import serkit.web.serve as serve_mod

    seen = {}
    monkeypatch.setattr(serve_mod, "serve", lambda settings, **kw: seen.update(vars(settings)))
    assert cli.main(["serve"]) == 0 and seen["quiet"] is False
    assert cli.main(["serve", "--quiet"]) == 0 and seen["quiet"] is True

"""Long-audio timelines: speech detection, segment scoring, streaming, the CLI.

Stated tolerances:
- energy detector on tones separated by near-silence: every segment boundary within 0.15 s of
  the truth (100 ms padding + one 32 ms frame);
- Silero VAD on synthetic babble: each speech stretch is found, starting within 0.25 s of its
  true start, ending at most 0.8 s after its true end (Silero hangs on after speech), covering
  at least 75 % of it, and nothing is found in the silences;
- memory: a 20-minute 44.1 kHz recording (212 MB as float32) is scored with a peak of under
  40 MB of traced allocations.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from serkit.audio import AudioStream, load_audio
from serkit.cli import main
from serkit.inference import load_model
from serkit.timeline import write_timelines
from serkit.vad import (FRAME, EnergyVAD, frames_of, make_vad, speech_segments,
                        split_long)
from synth import SR, trained_run, write_clip, write_corrupt
from synth_long import babble, quiet, tone_recording, write_long_recording

BOUNDARY_TOL = 0.15
PLAN = [(None, 1.0), ("angry", 2.0), (None, 1.5), ("happy", 3.0), (None, 1.0), ("sad", 1.2), (None, 1.0),
        ("happy", 0.6), (None, 0.8)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    _, run, _ = trained_run(tmp_path_factory)
    return run / "bundle"


@pytest.fixture(scope="module")
def predictor(bundle):
    return load_model(bundle)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    wave, truth = tone_recording(PLAN)
    path = write_clip(tmp_path_factory.mktemp("timeline") / "rec.wav", wave)
    return path, wave, truth


# ------------------------------------------------------------------------------ segmentation

def test_speech_segments_hysteresis_bridging_minimum_and_padding():
    sr, frame = 16000, 512                      # 32 ms frames
    p = np.zeros(200, np.float32)
    p[10:20] = 0.9                              # speech...
    p[20:23] = 0.4                              # ...held above the 0.35 release threshold
    p[23:26] = 0.1                              # a 96 ms pause: bridged (< 300 ms)
    p[26:40] = 0.8
    p[60:64] = 0.9                              # 128 ms: shorter than 250 ms, dropped
    p[100:150] = 0.7
    segs = speech_segments(p, 200 * frame, sr, frame, min_speech_ms=250, min_silence_ms=300, speech_pad_ms=0)
    assert segs == [(10 * frame, 40 * frame), (100 * frame, 150 * frame)]
    padded = speech_segments(p, 200 * frame, sr, frame, speech_pad_ms=100)
    assert padded == [(10 * frame - 1600, 40 * frame + 1600), (100 * frame - 1600, 150 * frame + 1600)]
    # padding never runs past the recording
    q = np.ones(20, np.float32)
    assert speech_segments(q, 20 * frame - 100, sr, frame) == [(0, 20 * frame - 100)]


def test_split_long_makes_equal_parts():
    assert split_long([(0, 100), (200, 230)], 40) == [(0, 33), (33, 67), (67, 100), (200, 230)]


def test_frames_of_recuts_blocks_and_pads_the_tail():
    wave = np.arange(2000, dtype=np.float32)
    blocks = [wave[:700], wave[700:701], wave[701:1600], wave[1600:]]
    frames = np.concatenate(list(frames_of(iter(blocks), 512)))
    assert frames.shape == (4, 512)
    np.testing.assert_array_equal(frames.reshape(-1)[:2000], wave)
    assert not frames.reshape(-1)[2000:].any()


# ----------------------------------------------------------------------------- the timeline

def test_energy_timeline_follows_the_tones(predictor, recording):
    path, _, truth = recording
    tl = predictor.predict_timeline(path, vad="energy")
    assert tl.vad == "energy" and tl.duration_s == pytest.approx(sum(s for _, s in PLAN), abs=1e-3)
    assert len(tl.segments) == len(truth)
    for seg, (start, end, emotion) in zip(tl.segments, truth):
        assert abs(seg.start - start) <= BOUNDARY_TOL and abs(seg.end - end) <= BOUNDARY_TOL, (seg, start, end)
        assert seg.emotion == emotion and seg.confidence > 0.5
        assert sum(seg.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_segments_are_scored_like_clips_and_a_file_like_its_waveform(predictor, recording, tmp_path):
    _, wave16, _ = recording
    # the same recording at 44.1 kHz stereo: the timeline streams and resamples it
    wave44 = soxr.resample(wave16, SR, 44100).astype(np.float32)
    path = tmp_path / "rec44.wav"
    sf.write(path, np.stack([wave44, wave44], axis=1), 44100, subtype="FLOAT")
    from_file = predictor.predict_timeline(path, vad="energy", block_seconds=1.3)
    wave = load_audio(path)
    from_wave = predictor.predict_timeline(wave, vad="energy")
    assert [(s.start, s.end, s.emotion, s.windows) for s in from_file.segments] == \
           [(s.start, s.end, s.emotion, s.windows) for s in from_wave.segments]
    for a, b in zip(from_file.segments, from_wave.segments):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1.1e-4)   # each rounded to 4 decimals
        seg = wave[int(round(a.start * SR)):int(round(a.end * SR))]
        expected = predictor.predict_proba([seg])[0]
        assert [a.probabilities[l] for l in predictor.labels] == pytest.approx(expected.tolist(), abs=5.1e-5)
        hop = predictor.clip_samples // 2
        assert a.windows == max(1, -(-(len(seg) - predictor.clip_samples) // hop) + 1)


def test_a_segment_is_flagged_uncertain_as_a_clip_is(predictor, bundle, recording):
    """Timeline segments carry the scorer's uncertain flag, in the table and the CSV too: a model
    made unsure (a high temperature) flags every segment; the trained one none of these tones."""
    from rich.console import Console

    from serkit.cli.predict import timeline_table

    path, _, _ = recording
    sure = predictor.predict_timeline(path, vad="energy")
    assert sure.segments and not any(s.uncertain for s in sure.segments)
    hot = load_model(bundle)
    hot.temperature = 100.0
    unsure = hot.predict_timeline(path, vad="energy")
    assert len(unsure.segments) == len(sure.segments)
    assert all(s.uncertain and max(s.probabilities.values()) < 0.5 for s in unsure.segments)
    console = Console(width=120, record=True, color_system=None)
    console.print(timeline_table(unsure))
    text = console.export_text()
    assert "? uncertain" in text and f"{unsure.segments[0].emotion}?" in text
    assert unsure.csv_header()[5] == "uncertain" and {row[5] for row in unsure.csv_rows()} == {"yes"}
    assert {row[5] for row in sure.csv_rows()} == {"no"}


def test_the_timeline_table_title_counts_segments_in_words(predictor, recording):
    """The terminal table's title: "4 segments", but "1 segment"."""
    from serkit.cli.predict import timeline_table

    tl = predictor.predict_timeline(recording[0], vad="energy")
    assert len(tl.segments) > 1
    assert timeline_table(tl).title.endswith(f", {len(tl.segments)} segments (vad energy)")
    one = dataclasses.replace(tl, segments=tl.segments[:1])
    assert timeline_table(one).title.endswith(", 1 segment (vad energy)")


def test_fixed_segments_without_a_detector(predictor, recording):
    path, wave, truth = recording
    tl = predictor.predict_timeline(path, vad="none", segment_s=1.0)
    assert tl.vad == "none"
    assert len(wave) / SR == pytest.approx(12.1)             # the last 0.1 s is too short alone...
    assert len(tl.segments) == 12 and tl.segments[-1].start == 11.0   # ...and joins the segment before
    assert tl.segments[0].start == 0 and tl.segments[-1].end == pytest.approx(len(wave) / SR, abs=1e-3)
    assert all(a.end == b.start for a, b in zip(tl.segments, tl.segments[1:]))
    # a second wholly inside a tone carries that tone's emotion
    for seg in tl.segments:
        inside = [e for s, t, e in truth if s <= seg.start and seg.end <= t]
        if inside:
            assert seg.emotion == inside[0]


def test_long_speech_is_split(predictor):
    rng = np.random.default_rng(4)
    from synth import tone_clip
    wave = np.concatenate([quiet(1, rng), tone_clip("sad", 25.0, rng), quiet(1, rng)])
    tl = predictor.predict_timeline(wave, vad="energy", max_segment_s=10)
    assert len(tl.segments) == 3
    lengths = [s.end - s.start for s in tl.segments]
    assert max(lengths) <= 10 and max(lengths) - min(lengths) < 0.01
    assert {s.emotion for s in tl.segments} == {"sad"}


def test_bad_input_errors(predictor, tmp_path):
    from serkit.audio import AudioError
    with pytest.raises(AudioError, match="cannot decode"):
        predictor.predict_timeline(write_corrupt(tmp_path / "x.wav"))
    with pytest.raises(AudioError, match="not found"):
        predictor.predict_timeline(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="unknown --vad"):
        predictor.predict_timeline(np.zeros(16000, np.float32), vad="webrtc")
    with pytest.raises(ValueError, match="sets the fixed pieces of --vad none; with --vad energy"):   # it did nothing there
        predictor.predict_timeline(np.zeros(16000, np.float32), vad="energy", segment_s=2.0)
    with pytest.raises(ValueError, match="--max-segment must be positive"):
        predictor.predict_timeline(np.zeros(16000, np.float32), vad="energy", max_segment_s=0)
    with pytest.raises(ValueError, match=".json or .csv"):
        write_timelines([], tmp_path / "t.txt")
    from test_audio import streamed_flac
    streamed = tmp_path / "streamed.flac"                       # the header leaves the length open
    streamed.write_bytes(streamed_flac(5.0))
    with pytest.raises(AudioError, match="leaves the length open"):
        predictor.predict_timeline(streamed, vad="energy")


# ------------------------------------------------------------------------------------ silero

def babble_recording(seed: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    parts, truth, t = [quiet(1.5, rng)], [], 1.5
    for f0, seconds in [(100, 3.0), (240, 3.0), (170, 2.0)]:
        parts += [babble(seconds, f0, rng), quiet(2.0, rng)]
        truth.append((t, t + seconds))
        t += seconds + 2.0
    return np.concatenate(parts), truth


def test_silero_streaming_equals_silero_on_the_whole_array():
    silero = pytest.importorskip("silero_vad")
    pytest.importorskip("onnxruntime")
    wave, _ = babble_recording(0)
    vad = make_vad("silero")
    vad.reset()
    blocks = [wave[i:i + 7777] for i in range(0, len(wave), 7777)]     # blocks that cut frames
    ours = np.concatenate([vad(f) for f in frames_of(iter(blocks), FRAME)])
    theirs = silero.load_silero_vad(sequence=True).audio_forward(wave)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_silero_is_found_without_importing_its_package():
    """silero-vad's ``__init__`` imports torch; a serving install without torch must still get
    silero (not a silent fall-back to the energy detector), so only its ONNX file is used."""
    pytest.importorskip("silero_vad")
    pytest.importorskip("onnxruntime")
    code = ("import sys; from serkit.timeline import make_vad; vad = make_vad('auto'); "
            "print(vad.name, 'silero_vad' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()
    assert out == ["silero", "False"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silero_finds_speech_like_sound_and_not_silence(seed):
    pytest.importorskip("silero_vad")
    pytest.importorskip("onnxruntime")
    wave, truth = babble_recording(seed)
    vad = make_vad("auto")
    assert vad.name == "silero"
    vad.reset()
    probs = np.concatenate([vad(f) for f in frames_of(iter([wave]), FRAME)])
    found = [(a / SR, b / SR) for a, b in speech_segments(probs, len(wave), SR)]
    for start, end in truth:
        mine = [(a, b) for a, b in found if b > start and a < end]
        assert mine and abs(mine[0][0] - start) <= 0.25, (found, truth)
        covered = sum(min(b, end) - max(a, start) for a, b in mine)
        assert covered >= 0.75 * (end - start), (found, truth)
    for a, b in found:   # nothing in the silences
        assert any(start - 0.25 <= a and b <= end + 0.8 for start, end in truth), (found, truth)


def test_tones_are_not_speech_to_silero_but_are_to_the_energy_detector(predictor, recording):
    pytest.importorskip("silero_vad")
    pytest.importorskip("onnxruntime")
    path, _, truth = recording
    assert predictor.predict_timeline(path, vad="silero").segments == []
    assert len(predictor.predict_timeline(path, vad="energy").segments) == len(truth)


# ------------------------------------------------------------------------------------ memory

def test_a_20_minute_recording_streams_in_bounded_memory(predictor, tmp_path):
    path, tones = write_long_recording(tmp_path / "long.wav", minutes=20, rate=44100)
    decoded_mb = sf.info(str(path)).frames * 4 / 1e6                     # float32 at 44.1 kHz
    assert decoded_mb > 200
    stream = AudioStream(path, SR)
    assert stream.duration_s == pytest.approx(1200, abs=0.01)
    tracemalloc.start()
    try:
        tl = predictor.predict_timeline(path, vad="energy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / 1e6 < 40, f"peak {peak / 1e6:.1f} MB"
    assert len(tl.segments) == tones
    assert tl.duration_s == pytest.approx(1200, abs=0.01)
    assert len(tl.speech_prob) == int(np.ceil(1200 * SR / FRAME))


# ------------------------------------------------------------------------------------ the CLI

def test_cli_timeline_outputs_and_plot(predictor, bundle, recording, tmp_path, capsys):
    path, _, truth = recording
    model = str(bundle)
    out, png = tmp_path / "tl.json", tmp_path / "tl.png"
    assert main(["predict", "--timeline", str(path), "--model", model, "--vad", "energy", "-o", str(out),
                 "--plot", str(png), "--no-progress"]) == 0
    data = json.loads(out.read_text())
    assert data["vad"] == "energy" and data["labels"] == predictor.labels
    assert [s["emotion"] for s in data["segments"]] == [e for _, _, e in truth]
    assert set(data["segments"][0]) == {"start", "end", "emotion", "confidence", "uncertain", "probabilities",
                                        "windows"}
    # each segment is flagged as a clip's answer would be
    assert [s["uncertain"] for s in data["segments"]] == [
        predictor.scorer.is_uncertain(np.array(list(s["probabilities"].values()))) for s in data["segments"]]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    capsys.readouterr()

    assert main(["predict", "--timeline", str(path), "--model", model, "--vad", "energy", "-f", "csv",
                 "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ",".join(["file", "start", "end", "emotion", "confidence", "uncertain", *predictor.labels,
                                 "windows"])
    assert len(lines) == 1 + len(truth)
    assert [ln.split(",")[5] for ln in lines[1:]] == ["yes" if s["uncertain"] else "no" for s in data["segments"]]

    bad = write_corrupt(tmp_path / "bad.wav")
    assert main(["predict", "--timeline", str(path), str(bad), "--model", model, "--vad", "energy",
                 "-o", str(tmp_path / "two.csv"), "--plot", str(tmp_path / "plots"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "bad.wav: cannot decode" in err
    assert (tmp_path / "plots" / "rec.png").is_file()
    assert main(["predict", "--timeline", str(path), "--model", model, "-o", str(tmp_path / "t.txt")]) == 2


def test_energy_vad_threshold_adapts_to_the_noise_floor():
    vad = EnergyVAD()
    rng = np.random.default_rng(0)
    noisy = np.concatenate([0.05 * rng.standard_normal(16000 * 4), 0.5 * rng.standard_normal(16000)]).astype(np.float32)
    scores = np.concatenate([vad(f) for f in frames_of(iter([noisy]))])
    speech = vad.finish(scores)
    assert speech[:120].mean() < 0.05 and speech[-30:-1].mean() == 1.0    # a loud noise floor is not speech


def test_cli_timeline_on_silence_says_no_speech_found(bundle, tmp_path, capsys):
    silent = write_clip(tmp_path / "silent.wav", np.zeros(SR * 8, np.float32))
    for fmt in ("table", "json"):
        assert main(["predict", "--timeline", str(silent), "--model", str(bundle), "--vad", "energy",
                     "-f", fmt, "--no-progress"]) == 0
        out, err = capsys.readouterr()
        assert f"{silent}: no speech found in 8.0 s (vad energy); the recording is silent" in err
        assert "--vad none" not in err           # digital silence is not scored with fixed segments either
        if fmt == "table":
            assert out == ""                     # no empty table
        else:
            assert json.loads(out)["segments"] == []


def test_timeline_json_has_4_decimal_probabilities_and_millisecond_times(predictor, recording):
    path, _, _ = recording
    data = predictor.predict_timeline(str(path), vad="energy").to_dict()
    for seg in data["segments"]:
        assert all(v == round(v, 4) for v in [seg["confidence"], *seg["probabilities"].values()])
        assert seg["start"] == round(seg["start"], 3) and seg["end"] == round(seg["end"], 3)
    assert data["duration_s"] == round(data["duration_s"], 3)


def test_plot_uses_the_page_palette_and_its_legend_leaves_the_data_free(predictor, recording, tmp_path,
                                                                        monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from serkit.display import emotion_color

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)      # keep the figure to look at it
    path, _, _ = recording
    predictor.predict_timeline(str(path), vad="energy").plot(tmp_path / "t.png")
    [fig] = figures
    top = fig.axes[0]
    assert {line.get_label(): to_hex(line.get_color()) for line in top.get_lines()} == {
        label: emotion_color(label, k) for k, label in enumerate(predictor.labels)}
    fig.canvas.draw()
    legend, data = top.get_legend().get_window_extent(), top.get_window_extent()
    monkeypatch.undo()
    plt.close(fig)
    assert not legend.overlaps(data)

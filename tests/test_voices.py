"""Voices told apart by the shipped speaker model (serkit.voices, --speakers voice)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serkit import voices
from serkit.inputs import speaker_groups

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def test_mel_front_end_is_librosas():
    librosa = pytest.importorskip("librosa")
    wave = np.random.default_rng(0).standard_normal(37_017).astype(np.float32) * 0.1
    want = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    got = voices.mel_power(wave)
    assert got.shape == want.shape == (232, 40)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * want.max())


def test_partials_cover_the_clip_as_resemblyzer_cuts_it():
    assert voices.partials(8000) == [slice(0, 160)]                 # shorter than a partial: one, padded
    step = 77                                                        # 1 / 1.3 s in 10 ms frames
    three = voices.partials(48000)                                   # 3 s: 301 frames
    assert [p.start for p in three] == [0, step, 2 * step]
    assert all(p.stop - p.start == 160 for p in three)
    # the last partial is kept only when 75 % of it is clip
    for n in (30000, 40000, 48000, 64000):
        last = voices.partials(n)[-1]
        assert len(voices.partials(n)) == 1 or (n - last.start * 160) / (160 * 160) >= 0.75


def test_embeddings_are_unit_length_and_do_not_depend_on_a_quiet_clips_level():
    rng = np.random.default_rng(1)
    t = np.arange(40_000) / 16000
    wave = (np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t)))
    quiet = (0.003 * wave).astype(np.float32)                       # about -57 dBFS
    e = voices.embed(quiet)
    assert e.shape == (256,) and abs(np.linalg.norm(e) - 1) < 1e-5
    np.testing.assert_allclose(voices.embed(quiet * 3), e, atol=1e-4)   # both raised to -30 dBFS
    with pytest.raises(ValueError, match="empty"):
        voices.embed(np.zeros(0, np.float32))


def test_cluster_numbers_voices_by_first_appearance_and_cuts_at_the_threshold():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(256), rng.standard_normal(256)
    rows = [v + 0.05 * rng.standard_normal(256) for v in (b, a, b, a, a)]
    e = np.stack([r / np.linalg.norm(r) for r in rows])
    assert voices.cluster(e).tolist() == [0, 1, 0, 1, 1]
    assert voices.voice_groups(e) == [[0, 2], [1, 3, 4]]
    assert voices.cluster(e, threshold=1.5).tolist() == [0] * 5      # everything merges
    assert voices.cluster(e[:1]).tolist() == [0] and voices.voice_groups(e[:0]) == []


def test_a_file_that_cannot_be_read_is_a_voice_of_its_own():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(16000).astype(np.float32) * 0.1
    waves = {"x": a, "bad": None, "y": a * 0.5, "empty": np.zeros(0, np.float32)}
    assert voices.group_files(list(waves), waves.get) == [[0, 2], [1], [3]]


def test_a_file_is_embedded_for_its_speech_only(monkeypatch):
    """speech_of joins the stretches the scorer's detector hears; with under 0.5 s of them (or
    none) the whole clip is embedded; group_files embeds that."""
    import serkit.vad

    wave = np.arange(32000, dtype=np.float32) / 32000
    heard = {"stretches": [(1000, 5000), (20000, 28000)]}
    monkeypatch.setattr(serkit.vad, "clip_speech", lambda w, rate: heard["stretches"])
    np.testing.assert_array_equal(voices.speech_of(wave), np.concatenate([wave[1000:5000], wave[20000:28000]]))
    heard["stretches"] = [(0, 7999)]
    np.testing.assert_array_equal(voices.speech_of(wave), wave)
    heard["stretches"] = []
    np.testing.assert_array_equal(voices.speech_of(wave), wave)
    embedded = []
    monkeypatch.setattr(voices, "embed", lambda w: embedded.append(len(w)) or np.ones(256) / 16)
    heard["stretches"] = [(0, 10000)]
    voices.group_files(["a"], {"a": wave}.get)
    assert embedded == [10000]


def test_fixed_pieces_are_embedded_for_their_speech_only(monkeypatch):
    """Windows a detector chose are embedded whole; windows cut in fixed pieces (a timeline or an
    upload with vad "none") are embedded for their speech only, as files are, so a piece that is
    mostly pause is not heard as a voice of its own."""
    import serkit.vad
    from serkit.inference import load_model

    monkeypatch.setattr(serkit.vad, "clip_speech", lambda w, rate: [(1000, 10000)])
    embedded = []
    monkeypatch.setattr(voices, "embed", lambda w: embedded.append(len(w)) or np.ones(256) / 16)
    rows, lengths = np.zeros((2, 48000), np.float32), [48000, 30000]
    sums = voices.add_windows(np.zeros((1, 256)), rows, lengths, [0, 0])
    assert embedded == [48000, 30000] and np.allclose(sums, 2 / 16)
    embedded.clear()
    voices.add_windows(np.zeros((1, 256)), rows, lengths, [0, 0], speech_only=True)
    assert embedded == [9000, 9000]
    told = []                                                     # which way each entry point asks
    real = voices.add_windows
    monkeypatch.setattr(voices, "add_windows", lambda *a, **k: told.append(k.get("speech_only")) or real(*a, **k))
    import serkit.inference
    import serkit.timeline
    monkeypatch.setattr(serkit.inference, "add_windows", voices.add_windows)
    predictor = load_model("default")
    wave = (0.1 * np.random.default_rng(0).standard_normal(16000 * 7)).astype(np.float32)
    serkit.timeline.predict_timeline(predictor, wave, vad="none", same_speaker=True, speakers="voice")
    assert told and all(told)                                     # the timeline's fixed pieces
    told.clear()
    predictor.analyse_one_voice(wave, vad="none", voices=True)
    assert told == [True]                                         # an upload's fixed pieces
    told.clear()
    import serkit.scorer
    monkeypatch.setattr(serkit.scorer, "clip_speech", lambda w, rate, vad="auto": [(1000, 40000), (60000, 100000)])
    predictor.analyse_one_voice(wave, vad="silero", voices=True)
    assert told == [False]


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent")


@pytest.mark.shared
@needs_shared
def test_two_actors_are_two_voices_whatever_their_emotions(tmp_path):
    """RAVDESS actors 1 (male) and 2 (female), 8 clips each in all 8 of their emotions, mixed
    together: --speakers voice groups them by actor (and a corrupt file stands alone)."""
    files = []
    for emotion in range(1, 9):
        for actor in (1, 2):
            files.append(str(SHARED / "ravdess" / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-02-01-{actor:02d}.wav"))
    assert all(Path(f).is_file() for f in files)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio")
    groups = speaker_groups(files + [str(bad)], "voice")
    actor = [f[-6:-4] for f in files]
    assert sorted(sorted({actor[i] for i in g}) for g in groups[:-1]) == [["01"], ["02"]]
    assert groups[-1] == [len(files)]


@needs_shared
def test_actors_of_one_sex_and_corpus_are_not_drawn_together_by_the_silence_around_them():
    """RAVDESS actors 9, 11, 13 and 15 (all male) in all 8 emotions: each RAVDESS clip begins with
    about a second of the same studio silence; embedded whole, 32 clips were 3 groups (purity
    0.72), read for their speech they are one group per actor."""
    files = [str(SHARED / "ravdess" / f"Actor_{a:02d}" / f"03-01-{e:02d}-01-01-01-{a:02d}.wav")
             for a in (9, 11, 13, 15) for e in range(1, 9)]
    groups = speaker_groups(files, "voice")
    assert sorted(sorted({files[i][-6:-4] for i in g}) for g in groups) == [["09"], ["11"], ["13"], ["15"]]


@pytest.mark.shared
@needs_shared
def test_cli_adapts_each_voice_it_finds(tmp_path, capsys):
    """serkit predict --same-speaker --speakers voice on two actors' clips in one folder: the batch
    job writes every file, adapted, and equals adapting each actor's files on their own."""
    from serkit.cli import main

    folder = tmp_path / "mixed"
    folder.mkdir()
    for actor in (1, 2):
        for emotion in range(1, 9):
            name = f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav"
            wave, rate = sf.read(SHARED / "ravdess" / f"Actor_{actor:02d}" / name, dtype="float32")
            sf.write(folder / name, wave, rate)
    out = tmp_path / "voices.csv"
    assert main(["predict", str(folder), "--same-speaker", "--speakers", "voice", "--output", str(out)]) == 0
    rows = {Path(r["file"]).name: r for r in csv.DictReader(out.open())}
    assert len(rows) == 16
    # each row says the voice its file was heard as: no voice holds both actors, a resumed job agrees
    heard = {}
    for name, r in rows.items():
        heard.setdefault(r["voice"], set()).add(name[-6:-4])
    assert len(heard) >= 2 and all(len(actors) == 1 for actors in heard.values())
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:9]) + "\n")
    assert main(["predict", str(folder), "--same-speaker", "--speakers", "voice", "--output", str(out), "--resume"]) == 0
    assert sorted(out.read_text().splitlines()) == sorted(lines)
    assert main(["predict", str(folder), "--same-speaker", "--output", str(out), "--resume"]) == 2   # no voice column
    assert "are not this model's" in " ".join(capsys.readouterr().err.split())
    jsonl = tmp_path / "voices.jsonl"
    assert main(["predict", str(folder), "--same-speaker", "--speakers", "voice", "--output", str(jsonl)]) == 0
    import json
    assert {Path(d["file"]).name: str(d["voice"]) for d in map(json.loads, jsonl.read_text().splitlines())} == {
        n: r["voice"] for n, r in rows.items()}
    assert main(["predict", str(folder), "--same-speaker", "--speakers", "voice", "-f", "csv"]) == 0
    printed = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert {Path(r["file"]).name: r["voice"] for r in printed} == {n: r["voice"] for n, r in rows.items()}
    for actor in (1, 2):
        own = tmp_path / f"own{actor}.csv"
        names = sorted(folder.glob(f"*-{actor:02d}.wav"))
        assert main(["predict", *map(str, names), "--same-speaker", "--output", str(own)]) == 0
        for r in csv.DictReader(own.open()):
            assert rows[Path(r["file"]).name]["emotion"] == r["emotion"]
            assert rows[Path(r["file"]).name]["confidence"] == r["confidence"]


@pytest.mark.shared
@needs_shared
def test_a_call_of_two_actors_is_told_apart_segment_by_segment(tmp_path, capsys):
    """A recording of RAVDESS actors 1 and 2 taking turns in six emotions: serkit predict --timeline
    --same-speaker --speakers voice gives each segment a voice, and no voice holds both actors."""
    from serkit.audio import load_audio
    from serkit.cli import main
    from serkit.inference import load_model

    pieces, turns = [], []
    for emotion in ("01", "03", "04", "05", "06", "07"):
        for actor in ("01", "02"):
            intensity = "01" if emotion == "01" else "02"
            pieces += [load_audio(SHARED / "ravdess" / f"Actor_{actor}" / f"03-01-{emotion}-{intensity}-01-01-{actor}.wav"),
                       np.full(8000, 1e-4, np.float32)]
            turns.append(actor)
    call = tmp_path / "call.wav"
    sf.write(call, np.concatenate(pieces), 16000)
    tl = load_model("default").predict_timeline(str(call), same_speaker=True, speakers="voice")
    assert len(tl.segments) == len(turns) and tl.voices
    by_voice = {}
    for g, actor in zip(tl.segments, turns):
        by_voice.setdefault(g.voice, set()).add(actor)
    assert len(by_voice) >= 2 and all(len(actors) == 1 for actors in by_voice.values())
    assert main(["predict", "--timeline", str(call), "--same-speaker", "--speakers", "voice"]) == 0
    out = capsys.readouterr().out
    assert f"{len(by_voice)} voice(s) told apart, each adapted to" in " ".join(out.split()) and " voice " in out


def test_without_scipy_it_says_what_to_install_before_reading_anything(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    read = []
    with pytest.raises(ValueError, match=r"pip install 'serkit\[voices\]'"):
        voices.group_files(["a.wav", "b.wav"], read.append)
    assert read == []


def test_the_converter_refuses_to_replace_a_file_before_any_work(tmp_path):
    """tools/voice_encoder.py (which makes the shipped graph) writes OUT whole or not at all and
    replaces an existing file only with --force; the refusal comes before the checkpoint is read."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("voice_encoder", Path(__file__).resolve().parents[1] / "tools"
                                                  / "voice_encoder.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"a user's file")
    with pytest.raises(SystemExit, match="exists"):
        tool.main([str(tmp_path / "no-checkpoint.pt"), str(out)])
    assert out.read_bytes() == b"a user's file"
    with pytest.raises(FileNotFoundError):       # with --force it goes on, to the missing checkpoint
        tool.main([str(tmp_path / "no-checkpoint.pt"), str(out), "--force"])
    assert out.read_bytes() == b"a user's file"

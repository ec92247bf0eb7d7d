"""load_audio (formats, rates, failures, the length cap), pad_or_trim and WaveformCache."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf

from fixtures import sine, write_corrupt, write_empty, write_text, write_wav, write_zero_frames
from serkit.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, WaveformCache, load_audio, pad_or_trim


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


def test_constants():
    assert SAMPLE_RATE == 16000 and CLIP_SAMPLES == 48000


def test_mono_16k_pcm16_passes_through(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=0.5)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.flags["C_CONTIGUOUS"]
    assert wave.shape == (8000,)
    np.testing.assert_allclose(wave, sine(0.5), atol=1 / 32768 + 1e-6)  # PCM16 quantisation
    assert load_audio(str(path)).shape == (8000,)  # str paths too


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = np.full(1600, 0.5, np.float32), np.full(1600, -0.1, np.float32)
    sf.write(str(tmp_path / "s.wav"), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wave = load_audio(tmp_path / "s.wav")
    assert wave.shape == (1600,)
    np.testing.assert_allclose(wave, 0.2, atol=1e-6)
    # six channels as well
    sf.write(str(tmp_path / "6.wav"), np.tile(np.arange(6, dtype=np.float32) / 10, (800, 1)), 16000,
             subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "6.wav"), 0.25, atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_16k(tmp_path, sr):
    path = write_wav(tmp_path / f"{sr}.wav", seconds=1.0, sr=sr, freq=440.0)
    wave = load_audio(path)
    assert wave.shape == (16000,)  # 1 s at any rate is 16000 samples at 16 kHz
    assert abs(peak_hz(wave, 16000) - 440.0) <= 2.0
    # the tone's level survives too (no gain change, no aliasing mush)
    assert np.sqrt(np.mean(wave[1000:-1000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)


def test_resampled_length_for_odd_durations(tmp_path):
    # 0.3 s at 44.1 kHz = 13230 frames -> 4800 samples at 16 kHz
    wave = load_audio(write_wav(tmp_path / "a.wav", seconds=0.3, sr=44100))
    assert wave.shape == (4800,)
    # 0.25 s at 22.05 kHz to 8 kHz: 2000 samples
    wave = load_audio(write_wav(tmp_path / "b.wav", seconds=0.25, sr=22050), sample_rate=8000)
    assert wave.shape == (2000,)


def test_44k_tone_frequency_survives_resampling(tmp_path):
    path = write_wav(tmp_path / "t.wav", seconds=1.0, sr=44100, freq=440.0)
    assert abs(peak_hz(load_audio(path), 16000) - 440.0) <= 2.0
    path = write_wav(tmp_path / "u.wav", seconds=1.0, sr=44100, freq=3000.0)
    assert abs(peak_hz(load_audio(path), 16000) - 3000.0) <= 2.0


@pytest.mark.parametrize("subtype,tol", [("PCM_16", 1 / 32768), ("PCM_24", 1 / 2 ** 23),
                                         ("FLOAT", 1e-7), ("PCM_U8", 1 / 128)])
def test_sample_formats(tmp_path, subtype, tol):
    path = write_wav(tmp_path / "a.wav", seconds=0.2, subtype=subtype)
    np.testing.assert_allclose(load_audio(path), sine(0.2), atol=tol + 1e-6)


def test_float_input_is_kept_as_is(tmp_path):
    x = np.array([0.0, 1.5, -2.0, 0.25] * 100, np.float32)
    sf.write(str(tmp_path / "f.wav"), x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "f.wav"), x)


def test_flac(tmp_path):
    path = write_wav(tmp_path / "a.flac", seconds=0.5, sr=44100, format="FLAC")
    wave = load_audio(path)
    assert wave.shape == (8000,)
    assert abs(peak_hz(wave, 16000) - 440.0) <= 4.0  # 0.5 s: 2 Hz bins


def test_ogg_vorbis(tmp_path):
    if "OGG" not in sf.available_formats() or "VORBIS" not in sf.available_subtypes("OGG"):
        pytest.skip("this libsndfile has no OGG/Vorbis")
    path = tmp_path / "a.ogg"
    sf.write(str(path), sine(1.0, 48000), 48000, format="OGG", subtype="VORBIS")
    wave = load_audio(path)
    assert abs(len(wave) - 16000) <= 16  # lossy codec: allow a little padding
    assert abs(peak_hz(wave, 16000) - 440.0) <= 2.0


def test_bytes_and_file_objects(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=0.5, sr=22050)
    expected = load_audio(path)
    data = path.read_bytes()
    np.testing.assert_array_equal(load_audio(data), expected)
    np.testing.assert_array_equal(load_audio(bytearray(data)), expected)
    np.testing.assert_array_equal(load_audio(io.BytesIO(data)), expected)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(load_audio(fh), expected)


@pytest.mark.parametrize("make,message", [
    (lambda p: write_corrupt(p), "cannot decode audio"),
    (lambda p: write_text(p, "this is a text file, not a wave file\n" * 20),
     r"cannot decode audio \(Format not recognised\)$"),
    (lambda p: write_zero_frames(p), "contains no samples"),
    (lambda p: write_empty(p), r"a\.wav: empty file \(0 bytes\)"),
], ids=["corrupt", "text", "zero-frames", "zero-bytes"])
def test_undecodable_files_raise_audio_error_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "a.wav")
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert str(info.value).count(path.name) == 1 and "b'" not in str(info.value)   # named once, as text
    assert isinstance(info.value, ValueError)  # the CLI turns ValueErrors into one line


def test_undecodable_bytes(tmp_path):
    with pytest.raises(AudioError, match=r"<0 bytes>: empty input"):
        load_audio(b"")
    with pytest.raises(AudioError, match=r"<2000 bytes>: cannot decode audio"):
        load_audio(np.random.default_rng(1).bytes(2000))
    with pytest.raises(AudioError, match="cannot decode audio"):
        load_audio(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(AudioError, match="contains no samples"):
        load_audio(write_zero_frames(tmp_path / "z.wav").read_bytes())


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nope.wav")


def test_nan_and_inf_are_refused(tmp_path):
    x = sine(0.1)
    x[100:110] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(tmp_path / "nan.wav")
    sf.write(str(tmp_path / "allnan.wav"), np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(tmp_path / "allnan.wav")
    x = sine(0.1)
    x[5] = np.inf
    sf.write(str(tmp_path / "inf.wav"), x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(tmp_path / "inf.wav")


def test_max_seconds_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "long.wav", seconds=2.0, sr=8000)
    assert load_audio(path, max_seconds=2.0).shape == (32000,)  # exactly at the cap is fine
    assert load_audio(path, max_seconds=None).shape == (32000,)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header already shows it is too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioError, match=r"2 s is longer than the 1 s limit") as info:
        load_audio(path, max_seconds=1.0)
    assert str(path) in str(info.value) and "--timeline" in str(info.value)
    with pytest.raises(AudioError, match="longer than"):
        load_audio(path.read_bytes(), max_seconds=1.5)


def streamed_flac(seconds: float = 2.0) -> bytes:
    """A FLAC whose STREAMINFO leaves the total length at 0 (unknown), as live encoders write it."""
    buf = io.BytesIO()
    sf.write(buf, sine(seconds), SAMPLE_RATE, format="FLAC")
    data = bytearray(buf.getvalue())
    at = 8 + 13                                   # STREAMINFO: bits-per-sample low bit + 36-bit total
    packed = int.from_bytes(data[at:at + 5], "big") & ~((1 << 36) - 1)
    data[at:at + 5] = packed.to_bytes(5, "big")
    return bytes(data)


@pytest.mark.parametrize("max_seconds", [3600.0, None])
def test_a_header_without_length_gets_a_true_error_not_a_huge_length(max_seconds):
    data = streamed_flac()
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert f.frames == 2**63 - 1                # what libsndfile reports for it
    with pytest.raises(AudioError, match="leaves the length open") as err:
        load_audio(data, max_seconds=max_seconds)   # without a cap it once tried to allocate 2**63 frames
    assert "longer than" not in str(err.value) and "ffmpeg" in str(err.value)


def test_default_cap_is_twenty_minutes(tmp_path):
    from serkit.audio import MAX_SECONDS

    assert MAX_SECONDS == 1200.0   # scoring holds ~6x the waveform; longer recordings go by --timeline
    # just over 20 minutes at a 1 kHz rate, 8-bit: 1.2 MB
    path = tmp_path / "huge.wav"
    with sf.SoundFile(str(path), "w", samplerate=1000, channels=1, subtype="PCM_U8") as f:
        block = np.zeros(1000 * 60, np.float32)
        for _ in range(21):
            f.write(block)
    assert sf.info(str(path)).duration > 1200
    with pytest.raises(AudioError, match="longer than the 1200 s limit"):
        load_audio(path)


# --------------------------------------------------------------------------- pad_or_trim

def test_pad_or_trim_pads_with_zeros_at_the_end():
    out = pad_or_trim(np.arange(1, 4, dtype=np.float32), 6)
    np.testing.assert_array_equal(out, [1, 2, 3, 0, 0, 0])
    batch = pad_or_trim(np.ones((2, 3), np.float32), 5)
    np.testing.assert_array_equal(batch, [[1, 1, 1, 0, 0]] * 2)


def test_pad_or_trim_same_length_is_unchanged():
    x = np.arange(5, dtype=np.float32)
    assert pad_or_trim(x, 5) is x


def test_pad_or_trim_crops():
    x = np.arange(10)
    np.testing.assert_array_equal(pad_or_trim(x, 4), [3, 4, 5, 6])            # center by default
    np.testing.assert_array_equal(pad_or_trim(x, 4, crop="center"), [3, 4, 5, 6])
    np.testing.assert_array_equal(pad_or_trim(x, 4, crop="start"), [0, 1, 2, 3])
    np.testing.assert_array_equal(pad_or_trim(np.arange(11), 4), [3, 4, 5, 6])  # odd excess: floor
    np.testing.assert_array_equal(pad_or_trim(np.stack([x, x + 10]), 2, crop="start"),
                                  [[0, 1], [10, 11]])


def test_pad_or_trim_random_windows():
    x = np.arange(100)
    starts = set()
    for seed in range(40):
        out = pad_or_trim(x, 10, crop="random", rng=np.random.default_rng(seed))
        assert out.shape == (10,)
        np.testing.assert_array_equal(np.diff(out), 1)  # a contiguous window
        assert 0 <= out[0] <= 90
        starts.add(int(out[0]))
    assert len(starts) > 10  # windows move
    a = pad_or_trim(x, 10, crop="random", rng=np.random.default_rng(7))
    b = pad_or_trim(x, 10, crop="random", rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)  # reproducible from the generator
    # the last window (start 90) is reachable
    assert any(pad_or_trim(np.arange(12), 10, crop="random", rng=np.random.default_rng(s))[0] == 2
               for s in range(50))
    assert pad_or_trim(x, 10, crop="random").shape == (10,)  # without a generator


def test_pad_or_trim_unknown_policy():
    with pytest.raises(ValueError, match="unknown crop policy 'middle'"):
        pad_or_trim(np.arange(10), 4, crop="middle")


# --------------------------------------------------------------------------- WaveformCache

def test_cache_second_load_is_a_hit(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=0.5, sr=44100)
    cache = WaveformCache(tmp_path / "cache")
    first = cache.load(path)
    assert (cache.hits, cache.misses) == (0, 1)
    np.testing.assert_array_equal(first, load_audio(path))
    second = cache.load(path)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(second, first)
    assert second.dtype == np.float32
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp*"))
    # a new cache object on the same folder (the next run) hits too
    again = WaveformCache(tmp_path / "cache")
    np.testing.assert_array_equal(again.load(path), first)
    assert (again.hits, again.misses) == (1, 0)


def test_cache_hit_does_not_decode(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "a.wav")
    cache = WaveformCache(tmp_path / "cache")
    cache.load(path)
    monkeypatch.setattr("serkit.audio.load_audio", lambda *a, **k: pytest.fail("decoded again"))
    assert cache.load(path).shape == (4000,)


def test_cache_redecodes_a_changed_file(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=0.5, freq=440.0)
    cache = WaveformCache(tmp_path / "cache")
    old = cache.load(path)
    st = os.stat(path)
    write_wav(path, seconds=0.75, freq=1000.0)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    new = cache.load(path)
    assert (cache.hits, cache.misses) == (0, 2)
    assert new.shape == (12000,) and old.shape == (8000,)
    assert abs(peak_hz(new, 16000) - 1000.0) <= 2.0
    # same size, new content and new mtime: still a new entry
    write_wav(path, seconds=0.75, freq=2000.0)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    assert abs(peak_hz(cache.load(path), 16000) - 2000.0) <= 2.0
    assert cache.misses == 3


def test_cache_keys_on_sample_rate(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=0.5, sr=44100)
    c16 = WaveformCache(tmp_path / "cache")
    c8 = WaveformCache(tmp_path / "cache", sample_rate=8000)
    assert c16.key(path) != c8.key(path)
    assert c16.load(path).shape == (8000,)
    assert c8.load(path).shape == (4000,)
    assert (c8.hits, c8.misses) == (0, 1)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    assert c16.key(path) == WaveformCache(tmp_path / "cache").key(tmp_path / "." / "a.wav")


def test_cache_propagates_audio_errors_and_stores_nothing(tmp_path):
    path = write_corrupt(tmp_path / "bad.wav")
    cache = WaveformCache(tmp_path / "cache")
    with pytest.raises(AudioError, match="cannot decode"):
        cache.load(path)
    assert not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("make", [
    lambda p: write_wav(p, seconds=1.3, sr=44100),
    lambda p: sf.write(str(p), np.random.default_rng(0).uniform(-.5, .5, (30000, 3)).astype(np.float32), 22050,
                       subtype="FLOAT"),
    lambda p: write_corrupt(p), lambda p: write_zero_frames(p), lambda p: write_empty(p),
    lambda p: sf.write(str(p), np.where(np.arange(1600) == 9, np.nan, 0.1).astype(np.float32), 8000, subtype="FLOAT"),
    lambda p: p.write_bytes(streamed_flac(1.0)),
    lambda p: None,                                 # no file
], ids=["44k", "3ch", "corrupt", "zero-frames", "zero-bytes", "nan", "open-length", "missing"])
def test_the_timeline_stream_and_load_audio_decode_alike(tmp_path, make):
    """One decoder: a recording read in blocks for a timeline gives load_audio's samples, or its error."""
    from serkit.audio import AudioStream

    path = tmp_path / "a.wav"
    make(path)
    try:
        expected = load_audio(path)
    except AudioError as exc:
        with pytest.raises(AudioError) as got:
            list(AudioStream(path, SAMPLE_RATE, block_seconds=0.1))
        assert str(got.value) == str(exc)
        return
    np.testing.assert_array_equal(np.concatenate(list(AudioStream(path, SAMPLE_RATE, block_seconds=0.1))), expected)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_wav_cut_short_is_scored_on_what_it_holds_with_a_note(tmp_path, subtype, capsys):
    """An interrupted copy: the header names 3 s, the file holds half. The audio there is used
    (as before), and a CutShortAudio warning names what is missing; the CLI prints it as a note."""
    from serkit.audio import AudioStream, CutShortAudio
    from serkit.cli import main

    wave = sine(seconds=3.0)
    whole = tmp_path / "whole.wav"
    sf.write(whole, wave, SAMPLE_RATE, subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:44 + (len(data) - 44) // 2])
    with pytest.warns(CutShortAudio, match=r"cut\.wav is cut short: it holds 1\.50 s of the 3\.00 s"):
        got = load_audio(cut)
    assert len(got) == pytest.approx(1.5 * SAMPLE_RATE, abs=8)
    with pytest.warns(CutShortAudio):
        AudioStream(str(cut), SAMPLE_RATE)                   # timelines read it the same way
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a whole file says nothing
        assert len(load_audio(whole)) == 3 * SAMPLE_RATE
        load_audio(data)
    placeholder = bytearray(data)                            # a writer to a pipe cannot know the length:
    i = data.find(b"data")                                   # 0xFFFFFFFF is no claim, and 1 byte short is nothing
    placeholder[i + 4:i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_audio(bytes(placeholder))) == 3 * SAMPLE_RATE
        assert len(load_audio(data[:-1])) >= 3 * SAMPLE_RATE - 1
    assert main(["predict", "-f", "json", "--vad", "none", str(cut)]) == 0
    out, err = capsys.readouterr()
    assert "note: " in err and "cut.wav is cut short" in err and '"emotion"' in out

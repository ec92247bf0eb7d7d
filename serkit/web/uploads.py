"""Uploaded bytes -> a 16 kHz mono waveform, or an :class:`ApiError` with the right HTTP status.

Everything happens in memory: the bytes are never written to disk, and the client's file name
is never used. The header is read first (cheap), so an upload whose header claims hours of
audio is refused before a single sample is decoded.

Status rules (decided by the content, never by the file name or the declared type):

- 413 ``too_long``      the audio is longer than the duration limit (from the header);
- 413 ``too_large``     the audio holds more raw samples than that duration at 48 kHz stereo
                         (the body over the byte limit, Flask's ``MAX_CONTENT_LENGTH``, is a
                         ``too_large`` too);
- 415 ``not_audio``     no audio signature (text, images, random bytes);
- 415 ``unsupported_format``  an audio container libsndfile does not read (WebM, MP4/M4A, AAC,
                         AMR, WMA);
- 400 ``empty``         an empty upload (0 bytes);
- 400 ``undecodable``   an audio signature, but the data cannot be decoded (corrupt, truncated,
                         an unsupported codec inside the container, a silly sample rate, a
                         header that leaves the length open);
- 422 ``out_of_range``  decodable audio whose samples lie far outside [-1, 1] (float audio not
                         scaled to +-1); audio that is too short, silent or not speech is no
                         error: the scorer answers it with no emotion and a reason.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from serkit.audio import AudioError, OutOfRangeAudio, cut_short, header_frames, load_audio, sample_budget

MIN_RATE, MAX_RATE = 4000, 192000     # Hz: input sample rates accepted
MAX_CHANNELS = 8
OPEN_LENGTH = 2 ** 62                  # libsndfile's frame count when the header leaves the length open

#: Leading bytes of formats libsndfile reads (an upload that starts so but fails is corrupt: 400).
SNDFILE_SIGNATURES: dict[bytes, str] = {
    b"RIFF": "WAV", b"RIFX": "WAV", b"RF64": "RF64", b"BW64": "WAV", b"riff": "W64",
    b"FORM": "AIFF", b"fLaC": "FLAC", b"OggS": "OGG", b"ID3": "MP3", b".snd": "AU",
    b"dns.": "AU", b"caff": "CAF", b"NIST_1A": "NIST", b"Creative Voice File": "VOC",
    b"2BIT": "AVR",
}
#: Audio containers libsndfile does not read: 415 with a hint to convert.
OTHER_AUDIO_SIGNATURES: dict[bytes, str] = {
    b"\x1a\x45\xdf\xa3": "WebM/Matroska", b"#!AMR": "AMR",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11": "WMA/ASF",
}
SUPPORTED = "WAV, FLAC, OGG (Vorbis or Opus), MP3 or AIFF"


#: Uploads whose header promises at least this long are checked for truncation (half of it must decode).
TRUNCATED_CHECK_S = 0.25


class ApiError(Exception):
    """An error a client caused; becomes ``{"status", "error", "message"}`` JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str, **extra: object):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "error": self.code, "message": self.message, **self.extra}


@dataclass(frozen=True)
class Limits:
    """What an upload may be. Bytes are limited separately by Flask's ``MAX_CONTENT_LENGTH``."""

    max_seconds: float = 120.0


class _Bytes(io.BytesIO):
    """BytesIO whose impossible seeks (before the start, from a corrupt header) fail quietly.

    libsndfile reports a failed seek as a position other than the one it asked for; a plain
    BytesIO raises inside soundfile's C callback instead, which only prints a traceback.
    """

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except (ValueError, OverflowError):
            return self.tell()


def sniff(data: bytes) -> tuple[str, bool] | None:
    """``(format name, libsndfile reads it)`` from the leading bytes, or None when not audio."""
    for sig, name in SNDFILE_SIGNATURES.items():
        if data.startswith(sig):
            return name, True
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        layer = (data[1] >> 1) & 3
        return ("MP3", True) if layer else ("AAC", False)   # ADTS AAC has layer bits 00
    for sig, name in OTHER_AUDIO_SIGNATURES.items():
        if data.startswith(sig):
            return name, False
    if data[4:8] == b"ftyp":
        return "MP4/M4A", False
    return None


def decode_upload(data: bytes, sample_rate: int, limits: Limits) -> tuple[np.ndarray, str | None]:
    """Decode uploaded bytes to mono float32 at ``sample_rate``, with a note for a WAV cut short
    that still holds half of what its header names (under half is refused); raises :class:`ApiError`."""
    if not data:
        raise ApiError(400, "empty", "The upload is empty (0 bytes); send an audio file.")
    kind = sniff(data)
    try:
        with sf.SoundFile(_Bytes(data)) as f:               # reads the header only
            rate, frames, channels, promised, cut = f.samplerate, f.frames, f.channels, header_frames(f), cut_short(f)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError):
        raise not_decodable(kind) from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ApiError(400, "undecodable", f"Unsupported sample rate {rate} Hz; "
                       f"send audio between {MIN_RATE} and {MAX_RATE} Hz.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ApiError(400, "undecodable", f"Unsupported channel count {channels}; "
                       f"send 1 to {MAX_CHANNELS} channels.")
    if frames >= OPEN_LENGTH:   # libsndfile cannot read such a stream to its end from memory
        raise ApiError(400, "undecodable", "The file does not say how long it is (a streamed FLAC?); "
                       "re-encode it with its length, e.g. ffmpeg -i in.flac out.wav.")
    if frames == 0:             # a header and nothing after it: a cut-off upload, not a short clip
        raise ApiError(400, "undecodable", f"The upload holds no audio samples (a {kind[0] if kind else 'file'} "
                       "header only); it is truncated or corrupt.")
    check_length(frames, rate, channels, limits)
    try:
        wave = load_audio(_Bytes(data), sample_rate, max_seconds=None, max_samples=None, note_cut_short=False)
    except OutOfRangeAudio as exc:
        raise ApiError(422, "out_of_range", f"The audio cannot be scored ({str(exc).split(': ', 1)[-1]}).") from None
    except AudioError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise ApiError(400, "undecodable", f"The audio cannot be decoded ({detail}).") from None
    promised = promised / rate      # a header that promises hours over a few bytes must not pass for a short clip
    if promised >= TRUNCATED_CHECK_S and len(wave) < 0.5 * promised * sample_rate:
        raise ApiError(400, "undecodable", f"The header promises {promised:.3g} s of audio but only "
                       f"{len(wave) / sample_rate:.3g} s decode; the upload is truncated or corrupt.")
    if not len(wave):
        raise ApiError(400, "undecodable", "The upload looks like audio but holds no samples; "
                       "it may be corrupt or truncated.")
    note = (f"The file is cut short: it holds {cut[0]:.2f} s of the {cut[1]:.2f} s its header names; "
            "scored on what it holds." if cut else None)
    return wave, note   # too short, silent or not speech: the scorer answers "no speech", as everywhere


def check_length(frames: int, rate: int, channels: int, limits: Limits) -> None:
    """413 for too long or too many samples: from the header, before decoding."""
    seconds = frames / rate
    if seconds > limits.max_seconds:
        raise ApiError(413, "too_long", f"The audio is {seconds:,.1f} s long; this server takes at most "
                       f"{limits.max_seconds:g} s. Send a shorter clip.", duration_s=round(seconds, 3))
    if frames * channels > sample_budget(limits.max_seconds):   # the same budget as every decode
        raise ApiError(413, "too_large", f"The audio holds too many samples ({channels} channels at "
                       f"{rate} Hz); send at most {limits.max_seconds:g} s of 48 kHz stereo.")


def not_decodable(kind: tuple[str, bool] | None) -> ApiError:
    if kind is None:
        return ApiError(415, "not_audio", f"The upload is not an audio file; send {SUPPORTED}.")
    name, readable = kind
    if not readable:
        return ApiError(415, "unsupported_format", f"{name} audio is not supported; convert it to "
                        f"{SUPPORTED} (the page does this for you in most browsers).")
    return ApiError(400, "undecodable", f"The upload looks like {name} but cannot be decoded; "
                    "it may be corrupt or truncated.")

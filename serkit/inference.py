"""Predictor: files or waveforms in, calibrated emotions out, through the one scorer.

    import serkit
    model = serkit.load_model()                  # the shipped default ("default"); or "fast", or a folder
    model.predict_file("clip.wav")               # Prediction(emotion, probabilities, uncertain, …)
    model.predict_waveform(wave, sample_rate=44100)
    model.predict_proba(wave)                    # (classes,) for one 1-D array, (n, classes) for a list

Scoring is :class:`serkit.scorer.Scorer`'s (speech first, windows, mean of window logits,
temperature). This module imports no torch: a bundle whose model needs it imports it when it
loads (the shipped models run on onnxruntime).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from serkit.audio import AudioError, AudioSpec, Decoded, decode_item, load_audio
from serkit.display import PROB_DECIMALS
from serkit.bundle import BundleError, for_inference, read_config  # noqa: F401  (for_inference re-exported)
from serkit.runtimes import EncoderHeadRuntime, NumpyHead, OnnxRuntime, TorchRuntime
from serkit.scorer import Analysis, Scorer, softmax, window_starts  # noqa: F401  (re-exported)
from serkit.speaker import SpeakerLogits, adapt_analyses, units_heard
from serkit.voices import add_windows, unit_voices

#: Models that ship inside the package, by the name the CLI, the API and the web page use.
SHIPPED = {"default": "default_model", "fast": "fast_model"}


def default_model_path() -> Path:
    """The folder of the default model shipped inside the package."""
    return shipped_model_path("default")


def shipped_model_path(name: str) -> Path:
    if name not in SHIPPED:
        raise ValueError(f"no shipped model called {name!r}; serkit ships {', '.join(SHIPPED)}")
    return Path(__file__).parent / SHIPPED[name]


@dataclass
class Prediction:
    """One clip's answer: the emotion and every class's probability; or no emotion, with
    ``reason`` (no speech found) or ``error`` (the file could not be used)."""

    file: str
    emotion: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    speech_s: float | None = None
    uncertain: bool = False
    reason: str | None = None
    error: str | None = None
    voice: int | None = None     # --speakers voice: the voice the file was heard as (0, 1, ...)

    @property
    def confidence(self) -> float | None:
        return self.probabilities.get(self.emotion) if self.emotion and self.probabilities else None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "emotion": self.emotion, "confidence": self.confidence,
                "uncertain": self.uncertain, "probabilities": self.probabilities,
                "duration_s": self.duration_s, "speech_s": self.speech_s, "reason": self.reason,
                "error": self.error, **({} if self.voice is None else {"voice": self.voice})}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


class Predictor:
    """Scores audio with a loaded model. Build it with :func:`serkit.load_model`.

    ``model`` is a runtime (an object with ``logits(windows, lengths)``) or a PyTorch module.
    """

    def __init__(self, model: Any, config: dict[str, Any], name: str = "model"):
        self.config, self.name = config, name
        self.runtime = model if hasattr(model, "logits") else TorchRuntime(model)
        self.model = getattr(self.runtime, "module", None)
        self.labels: list[str] = list(config["labels"])
        self.spec = AudioSpec.from_config(config["audio"])
        scoring = config.get("scoring", {})
        self.scorer = Scorer(self.runtime, self.labels, self.spec, float(config.get("temperature", 1.0)),
                             **{k: scoring[k] for k in ("vad", "uncertain_below", "uncertain_margin") if k in scoring})

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def clip_samples(self) -> int:
        return self.spec.window_samples

    @property
    def temperature(self) -> float:
        return self.scorer.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"temperature must be a positive number, not {value}")
        self.scorer.temperature = float(value)

    def __repr__(self) -> str:
        return (f"<serkit Predictor {self.name!r}: {self.config.get('model_type')} on {self.runtime.name}, "
                f"labels {', '.join(self.labels)}, {self.spec.clip_seconds:g} s windows at {self.sample_rate} Hz>")

    # -- audio as given ----------------------------------------------------------------------
    def logits_windows(self, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits (n, classes) for windows (n, clip_samples) with valid ``lengths``."""
        return self.scorer.window_logits(windows, lengths, batch_size)

    def logits(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Uncalibrated logits per clip (n, classes): the mean of its windows' logits."""
        return self.scorer.logits(waves, batch_size)

    def predict_proba(self, waves: np.ndarray | Sequence[np.ndarray], batch_size: int = 64,
                      sample_rate: int | None = None) -> np.ndarray:
        """Calibrated probabilities of audio AS GIVEN (no speech detection): (classes,) for one
        1-D waveform, (n, classes) for a list. ``sample_rate``: the arrays' rate (resampled to
        the model's; default: already at ``self.sample_rate``)."""
        single = isinstance(waves, np.ndarray) and waves.ndim == 1
        waves = [self._at_rate(w, sample_rate) for w in ([waves] if single else waves)]
        probs = self.scorer.proba(waves, batch_size)
        return probs[0] if single else probs

    # -- the user-facing answer -----------------------------------------------------------------
    def analyse(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> list[Analysis]:
        """Speech-first analyses (see :mod:`serkit.scorer`) of waveforms at ``sample_rate``."""
        return self.scorer.analyse(waves, batch_size)

    def analyse_each(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> list[Analysis | AudioError]:
        """:meth:`analyse`, where a clip the model cannot score (non-finite output) fails alone:
        its item is the :class:`~serkit.audio.AudioError`, and the batch's other clips are answered."""
        try:
            return list(self.analyse(waves, batch_size))
        except AudioError as exc:
            if len(waves) == 1:
                return [exc]
            return [a for w in waves for a in self.analyse_each([w], batch_size)]

    def prediction(self, file: str, analysis: Analysis) -> Prediction:
        """The answer for ``file`` from its analysis."""
        sr = self.sample_rate
        p = Prediction(file=file, duration_s=round(analysis.n_samples / sr, 3),
                       speech_s=round(analysis.speech_samples / sr, 3), reason=analysis.reason)
        if analysis.probabilities is not None:
            best = int(np.argmax(analysis.probabilities))
            p.emotion, p.uncertain = self.labels[best], analysis.uncertain
            p.probabilities = {l: round(float(v), PROB_DECIMALS) for l, v in zip(self.labels, analysis.probabilities)}
        return p

    @property
    def can_adapt(self) -> bool:
        """Whether the model can adapt to one speaker (:meth:`predict_same_speaker`)."""
        return bool(getattr(self.runtime, "can_adapt", False))

    def check_can_adapt(self) -> None:
        """BundleError, saying why, unless the model can adapt to one speaker (:attr:`can_adapt`)."""
        if not self.can_adapt:
            raise BundleError(f"{self.name} cannot adapt to a speaker: it has no speaker head (encoder-head "
                              "models with a linear head have one when trained by this serkit, as the "
                              "shipped default has)")

    def analyse_same_speaker(self, waves: Iterable[np.ndarray | None], batch_size: int = 64, vad: str | None = None,
                             on_clip: Callable[[Analysis | AudioError | None], object] | None = None,
                             voices: bool = False) -> list[Analysis | AudioError | None]:
        """:meth:`analyse_each` of clips of ONE voice, answered adapted to that voice
        (:func:`serkit.speaker.adapt_analyses`: the speaker's offset estimated class by class over
        all their stretches of speech, read by the model's speaker head; the model's temperature
        applies: measured, adapted answers are better calibrated than plain ones). ``waves`` is read
        one clip at a time (a None item, a clip not decoded, stays None) and ``on_clip`` is called
        with each clip's item as it is analysed, so only the analyses are kept. BundleError for a
        model without a speaker head. ``voices``: the stretches may be of several voices (a call),
        told apart as a timeline tells them (:mod:`serkit.voices`), each voice adapted to itself."""
        self.check_can_adapt()
        both, told = SpeakerLogits(self.runtime), []         # told (voices): each stretch's summed window embeddings
        scorer = both.scoring(self.scorer)
        out: list[Analysis | AudioError | None] = []
        heard: list[tuple[Analysis, np.ndarray]] = []       # clips with speech and their units' speaker logits
        for wave in waves:
            try:
                a = None if wave is None else scorer.analyse([wave], batch_size, vad=vad)[0]
            except AudioError as exc:
                a = exc
            if units_heard(a):
                heard.append((a, both.of_units(scorer, wave, a)))   # reads and clears the clip's rows
                if voices:
                    told.append(add_windows(np.zeros((len(a.segments), 256)), *scorer.cut([wave[s:e] for s, e in a.segments]), speech_only=a.vad == "none"))
            both.rows.clear()                               # what a clip without speech or failed left
            out.append(a)
            if on_clip is not None:
                on_clip(a)
        adapt_analyses(heard, self.runtime.head.speaker.table, self.scorer,
                       unit_voices(np.concatenate(told)) if told else None)
        return out

    def predict_same_speaker(self, paths: Iterable[str | os.PathLike], batch_size: int = 64,
                             on_clip: Callable[[Analysis | AudioError | None], object] | None = None,
                             ) -> list[Prediction]:
        """One Prediction per path, as :meth:`predict_files` gives them, for clips of ONE voice, adapted
        to it (:meth:`analyse_same_speaker`; held-out speakers: +2.3 to +2.7 points of UAR with 12
        clips whatever their mix of emotions, +1.5 with 8, nothing with 4). Clips are decoded one at
        a time; ``on_clip`` as there."""
        items: list[tuple[str, str | None]] = []

        def waves():
            for path in paths:
                file, wave, error = decode_item(str(path), self.sample_rate)
                items.append((file, error))
                yield wave
        analyses = self.analyse_same_speaker(waves(), batch_size, on_clip=on_clip)
        return [Prediction(file=file, error=error) if a is None
                else Prediction(file=file, error=f"{file}: {a}") if isinstance(a, AudioError)
                else self.prediction(file, a) for (file, error), a in zip(items, analyses)]

    def analyse_one_voice(self, wave: np.ndarray, batch_size: int = 64, vad: str | None = None,
                          voices: bool = False) -> Analysis:
        """:meth:`analyse` of one recording taken as ONE voice (the web API's ``same_speaker``):
        :meth:`analyse_same_speaker` of it alone, so with two stretches of speech or more each is
        answered adapted to that voice and the recording from them; AudioError as :meth:`analyse`.
        ``voices`` (``speakers=voice``): its voices told apart, each adapted (``Analysis.voices``)."""
        a = self.analyse_same_speaker([wave], batch_size, vad, voices=voices)[0]
        if isinstance(a, AudioError):
            raise a
        return a

    def predict_waveform(self, wave: np.ndarray, name: str = "<waveform>", sample_rate: int | None = None) -> Prediction:
        """The answer for one 1-D waveform (``sample_rate``: its rate, default the model's)."""
        wave = self._at_rate(wave, sample_rate)
        return self.prediction(name, self.analyse([wave])[0])

    def predict_files(self, paths: Iterable[str | os.PathLike], batch_size: int = 64) -> list[Prediction]:
        """One Prediction per path, in order; a file that cannot be used gets ``error`` set."""
        paths = [str(p) for p in paths]
        return [r for start in range(0, len(paths), batch_size)
                for r in self.predict_decoded([decode_item(p, self.sample_rate)
                                               for p in paths[start:start + batch_size]], batch_size)]

    def predict_decoded(self, items: Sequence[Decoded], batch_size: int = 64) -> list[Prediction]:
        """One Prediction per item of :func:`serkit.audio.decode_item`, in order: an item that
        could not be decoded, or a clip the model cannot score, gets ``error`` set (the other
        clips are answered). Every many-file path (:meth:`predict_files`, batch jobs, Ray) ends here."""
        ok = [i for i, (_, wave, _) in enumerate(items) if wave is not None]
        analyses = self.analyse_each([items[i][1] for i in ok], batch_size) if ok else []
        out = [Prediction(file=file, error=error) for file, _, error in items]
        for i, a in zip(ok, analyses):
            file, wave, _ = items[i]
            out[i] = (Prediction(file=file, error=f"{file}: {a}") if isinstance(a, AudioError)
                      else self.prediction(file, a))
        return out

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """The answer for one file; raises :class:`~serkit.audio.AudioError` when it cannot be used."""
        wave = load_audio(path, self.sample_rate)
        return self.prediction(str(path), self.analyse([wave])[0])

    def predict_timeline(self, source: str | os.PathLike | np.ndarray, **options: Any):
        """Emotions over time of a long recording (a path, or a 1-D waveform at ``sample_rate``),
        streamed in bounded memory. Returns a :class:`serkit.timeline.Timeline`; ``options`` are
        those of :func:`serkit.timeline.predict_timeline` (``vad``, ``max_segment_s``, …)."""
        from serkit.timeline import predict_timeline   # timeline builds on this module
        return predict_timeline(self, source, **options)

    def warmup(self) -> Predictor:
        """Run the model once on a synthetic window so the first real call is not the slow one
        (onnxruntime and torch set up their kernels lazily). :func:`load_model` calls it."""
        t = np.arange(self.clip_samples, dtype=np.float32) / self.sample_rate
        self.scorer.logits([0.1 * np.sin(2 * np.pi * 220 * t).astype(np.float32)])
        return self

    def _at_rate(self, wave: np.ndarray, sample_rate: int | None) -> np.ndarray:
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1:
            raise AudioError(f"expected a 1-D waveform, got an array of shape {wave.shape}")
        if sample_rate is not None and sample_rate != self.sample_rate:
            if sample_rate <= 0:
                raise AudioError(f"sample_rate must be positive, not {sample_rate}")
            wave = soxr.resample(wave, sample_rate, self.sample_rate, quality="HQ").astype(np.float32)
        return wave


def resolve_model(path: str | os.PathLike | None) -> Path:
    """The folder of a model given by folder, by shipped name (``default``, ``fast``) or None (default)."""
    if path is None:
        return default_model_path()
    if isinstance(path, str) and path in SHIPPED and not Path(path).exists():
        return shipped_model_path(path)
    return Path(path)


def load_model(path: str | os.PathLike | None = None, runtime: str = "auto", warmup: bool = True) -> Predictor:
    """A Predictor for the model at ``path``: a bundle folder, an ONNX export folder (or one of
    its ``.onnx`` files), a shipped model's name (``"default"``, ``"fast"``), or None (default).

    ``runtime``: ``"torch"`` (a bundle), ``"onnx"`` (an export) or ``"auto"`` (ONNX when the
    folder is an export or an encoder-head model, else torch).
    """
    if runtime not in ("auto", "torch", "onnx"):
        raise ValueError(f"unknown runtime {runtime!r}; choose auto, torch or onnx")
    folder = resolve_model(path)
    if folder.suffix == ".onnx" or (runtime != "torch" and (folder / "config.json").is_file()
                                    and "onnx" in read_config(folder)):
        predictor: Predictor = load_onnx_model(folder)
    else:
        config = read_config(folder)
        name = model_name(folder)
        if config["model_type"] == "encoder_head":
            predictor = Predictor(encoder_head_runtime(folder, config), config, name=name)
        elif runtime == "onnx":
            raise BundleError(f"{folder}: not an ONNX export; make one with: serkit export {folder} --onnx -o DIR")
        else:
            try:
                import torch  # noqa: F401  (PyTorch bundles need it; the shipped models do not)
            except ImportError:
                raise BundleError(f"{folder}: a {config['model_type']} bundle runs on PyTorch: "
                                  "pip install 'serkit[train]', or export it with serkit export --onnx") from None
            from serkit.bundle import load_bundle
            model, config = load_bundle(folder)
            predictor = Predictor(for_inference(model, config["model_type"]), config, name=name)
    return predictor.warmup() if warmup else predictor


def model_name(folder: Path) -> str:
    """A shipped model's name (``default``, ``fast``), a run's name for ``<run>/bundle``, else the folder's."""
    folder = folder.resolve()
    shipped = {(Path(__file__).parent / sub).resolve(): name for name, sub in SHIPPED.items()}
    run = folder.name == "bundle" and folder.parent.name        # serkit train's <run>/bundle
    return shipped.get(folder) or (folder.parent.name if run else folder.name)


def encoder_head_runtime(folder: Path, config: dict[str, Any]) -> EncoderHeadRuntime:
    """The runtime of an encoder-head bundle: its encoder graph (a shipped backbone or a file
    inside the bundle) and its head's weights, read without torch."""
    from safetensors.numpy import load_file

    from serkit.backbones import encoder_path
    mc = config["model_config"]
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BundleError(f"{folder}: missing model.safetensors")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise BundleError(f"{weights}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    return EncoderHeadRuntime(encoder_path(mc["backbone"], folder), NumpyHead(state, mc))


class OnnxPredictor(Predictor):
    """Predictor whose model is an ONNX graph run by onnxruntime (CPU)."""

    def __init__(self, model_path: str | os.PathLike, config: dict[str, Any], name: str = "model",
                 threads: int | None = None):
        self.model_path = Path(model_path)
        try:
            runtime = OnnxRuntime(self.model_path, threads)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        super().__init__(runtime, config, name)


def load_onnx_model(path: str | os.PathLike, precision: str | None = None,
                    threads: int | None = None) -> OnnxPredictor:
    """An :class:`OnnxPredictor` for an export folder or one of its ``.onnx`` files.

    ``precision`` (``"fp32"`` or ``"int8"``) picks a file of the folder; by default the one the
    export made its default (int8 when exported with ``--int8``).
    """
    p = Path(path)
    folder = p.parent if p.suffix == ".onnx" else p
    config = read_config(folder)
    if p.suffix == ".onnx":
        if not p.is_file():
            raise BundleError(f"{p}: no such ONNX file")
        model_file = p
    else:
        model_file = onnx_file(folder, config, precision)
    return OnnxPredictor(model_file, config, name=model_name(folder), threads=threads)


def onnx_file(folder: Path, config: dict[str, Any], precision: str | None = None) -> Path:
    """The ONNX file of an export ``folder`` (its ``config``) that serves ``precision``: by default
    the export's default precision. Names only a file inside the folder."""
    info = config.get("onnx")
    if not info:
        raise BundleError(f"{folder}: not an ONNX export (config.json has no 'onnx' section); "
                          "make one with: serkit export BUNDLE --onnx -o DIR")
    choice = precision or info.get("default", "fp32")
    files = info.get("files", {})
    if choice not in files or Path(files[choice]).name != files[choice]:
        raise BundleError(f"{folder}: no {choice} model in this export "
                          f"(it has {', '.join(files) or 'none'})")
    return folder / files[choice]

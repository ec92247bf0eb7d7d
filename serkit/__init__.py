"""serkit: speech emotion recognition, from corpus folders to a served model.

    import serkit
    model = serkit.load_model()                 # the shipped default model
    model.predict_file("clip.wav").emotion      # 'angry'
"""
from __future__ import annotations

from serkit.version import __version__


def load_model(path=None, runtime: str = "auto", warmup: bool = True):
    """A Predictor for the model at ``path``: a bundle folder, an ONNX export (its folder or one
    of its ``.onnx`` files), a shipped model's name (``"default"``, ``"fast"``), or None (the
    default). ``runtime``: ``"torch"``, ``"onnx"`` or ``"auto"``; see
    :func:`serkit.inference.load_model` (imported only when called, so ``import serkit`` stays light)."""
    from serkit.inference import load_model as _load
    return _load(path, runtime=runtime, warmup=warmup)


def default_model_path():
    """The folder of the default model that ships inside the package."""
    from serkit.inference import default_model_path as _path
    return _path()


__all__ = ["__version__", "load_model", "default_model_path"]

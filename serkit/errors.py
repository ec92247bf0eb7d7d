"""Error types shared across layers (defined at the bottom, so any module may raise them)."""
from __future__ import annotations


class BundleError(ValueError):
    """A folder that is not a usable serkit bundle; the message names the folder and the problem."""

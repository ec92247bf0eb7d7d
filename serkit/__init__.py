"""serkit: speech emotion recognition, from corpus folders to a served model."""
from __future__ import annotations

__version__ = "0.1.0"

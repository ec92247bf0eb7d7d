"""Shared fixtures. Corpus builders live in tests/fixtures.py (imported here and by test modules)."""
from __future__ import annotations

import os

import pytest

from fixtures import Expected, build_combined, build_shared_like

# The suite's clips are synthetic tones, which Silero rightly calls "not speech". Models whose
# bundle names no speech detector use $SERKIT_VAD, so here the energy detector (any loud sound
# is speech); tests of speech detection name silero, and the shipped models name their own.
os.environ.setdefault("SERKIT_VAD", "energy")


@pytest.fixture
def combined(tmp_path) -> Expected:
    """The original project's combined download (Crema/, Ravdess/…, Savee/, Tess/) with strays."""
    return build_combined(tmp_path / "combined")


@pytest.fixture
def shared_like(tmp_path) -> Expected:
    """A small copy of the shared/corpora layout: ravdess/Actor_XX/ and emodb/wav/."""
    return build_shared_like(tmp_path / "corpora")

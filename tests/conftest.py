"""Shared fixtures. Corpus builders live in tests/fixtures.py (imported here and by test modules)."""
from __future__ import annotations

import pytest

from fixtures import Expected, build_combined, build_shared_like


@pytest.fixture
def combined(tmp_path) -> Expected:
    """The original project's combined download (Crema/, Ravdess/…, Savee/, Tess/) with strays."""
    return build_combined(tmp_path / "combined")


@pytest.fixture
def shared_like(tmp_path) -> Expected:
    """A small copy of the shared/corpora layout: ravdess/Actor_XX/ and emodb/wav/."""
    return build_shared_like(tmp_path / "corpora")

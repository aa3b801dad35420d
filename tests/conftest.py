"""Shared test helpers: where the shared corpora and conformance vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUNET_SHARED", REPO.parent / "shared"))

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


def shared_path(rel: str) -> Path:
    """A file of ../shared, or skip: a user's clone has no ../shared."""
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not present (shared corpora are only on the team's machines)")
    return path

"""Shared fixtures of the data tests: where the read-only reference files and sample clips live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()
REFERENCE = SHARED / "fixtures" / "reference"
SAMPLES = SHARED / "samples"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``<repo>/../shared/fixtures/reference`` (skips when absent)."""
    if not (REFERENCE / "data.safetensors").exists() or not (REFERENCE / "data" / "data.json").exists():
        pytest.skip(f"reference fixtures not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """``<repo>/../shared/samples`` (skips when absent)."""
    if not SAMPLES.exists() or not any(SAMPLES.glob("*.mp4")):
        pytest.skip(f"sample clips not found at {SAMPLES}")
    return SAMPLES

"""Training-fidelity tests run tiny models: one intra-op thread avoids contention on small shared CPUs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _one_cpu_thread(one_cpu_thread):
    """Every test here runs with one torch thread (the root conftest's ``one_cpu_thread``)."""

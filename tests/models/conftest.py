"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
from model_helpers import make_official_file


@pytest.fixture
def official_file(tmp_path):
    """``official_file(name)`` writes a reference fixture's state dict as an official ``.pth``."""
    return lambda name: make_official_file(tmp_path, name)

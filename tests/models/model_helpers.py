"""Shared helpers for the model tests: the reference fixtures and official-format files made from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = (REPO / ".." / "shared" / "fixtures" / "reference").resolve()
#: head counts of the tiny fixture models (not recorded in checkpoints)
TINY_HEADS = {"encoder": {"num_heads": 2}, "decoder": {"num_heads": 2}}


def fixture_tensors(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = FIXTURES / f"{name}.safetensors"
    if not path.exists():
        pytest.skip(f"reference fixture {path} is absent (it lives in ../shared/fixtures/reference)")
    return load_file(str(path))


def fixture_meta(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_official_file(tmp_path, name: str):
    """Write the fixture's ``module.*`` state dict as an official ``.pth``; return (path, all tensors)."""
    tensors = fixture_tensors(name)
    path = tmp_path / f"{name}.pth"
    torch.save({k: v for k, v in tensors.items() if k.startswith("module.")}, path)
    return path, tensors


_CACHE: dict[str, object] = {}


def cached_official_model(name: str):
    """Load fixture ``name`` through the official-checkpoint loader once per test session; (model, tensors)."""
    if name not in _CACHE:
        import tempfile

        from cavkit.checkpoints.load import load_model

        with tempfile.TemporaryDirectory() as tmp:
            path, tensors = make_official_file(Path(tmp), name)
            overrides = {"encoder": {"num_heads": 2}} if name.endswith("ft_tiny") else TINY_HEADS
            _CACHE[name] = (load_model(str(path), overrides=overrides), tensors)
    return _CACHE[name]

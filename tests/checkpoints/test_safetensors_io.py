"""Weights files written and read through :mod:`cavkit.safetensors_io` (training's ``save_weights`` /
``model_state_from_file``), on local paths and ``memory://``, and the error a damaged one gets."""

from __future__ import annotations

import uuid

import pytest
import torch

from cavkit.engine import checkpoint as ckpt
from cavkit.errors import CheckpointError
from cavkit.safetensors_io import read_metadata, read_safetensors, read_tensor_names, safetensors_bytes

STATE = {"encoder.w": torch.arange(6.0).reshape(3, 2).t(), "head.b": torch.tensor([1.5, -2.0])}


@pytest.mark.parametrize("where", ["local", "memory"])
def test_weights_round_trip_with_their_metadata(tmp_path, where):
    folder = str(tmp_path) if where == "local" else f"memory:///st-{uuid.uuid4().hex}"
    uri = f"{folder}/weights/final.safetensors"
    ckpt.save_weights(STATE, uri, {"step": "5"})
    back = ckpt.model_state_from_file(uri)
    assert set(back) == set(STATE) and all(torch.equal(back[k], STATE[k]) for k in STATE)
    assert read_metadata(uri) == {"step": "5"}
    assert sorted(read_tensor_names(uri)) == ["encoder.w", "head.b"]


def test_only_the_selected_tensors_are_read():
    data = safetensors_bytes(STATE, {"format": "x"})
    tensors, meta = read_safetensors(data, select=lambda name: name.startswith("head."))
    assert list(tensors) == ["head.b"] and torch.equal(tensors["head.b"], STATE["head.b"]) and meta == {"format": "x"}


def test_a_damaged_weights_file_is_a_checkpoint_error(tmp_path):
    uri = str(tmp_path / "final.safetensors")
    ckpt.save_weights(STATE, uri)
    data = (tmp_path / "final.safetensors").read_bytes()
    (tmp_path / "final.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointError, match=r"final.safetensors: truncated or corrupt safetensors file"):
        ckpt.model_state_from_file(uri)
    with pytest.raises(CheckpointError, match=r"missing.safetensors: weights file not found"):
        ckpt.model_state_from_file(str(tmp_path / "missing.safetensors"))


def test_numpy_arrays_round_trip_even_when_not_contiguous():
    import numpy as np

    arrays = {"audio": np.arange(12, dtype=np.float32).reshape(3, 4).T, "ids": np.array([3, 1, 2], dtype=np.int64)}
    assert not arrays["audio"].flags["C_CONTIGUOUS"]
    data = safetensors_bytes(arrays, {"format": "y"}, framework="numpy")
    back, meta = read_safetensors(data, "numpy")
    assert meta == {"format": "y"} and set(back) == {"audio", "ids"}
    assert np.array_equal(back["audio"], arrays["audio"]) and back["audio"].dtype == np.float32
    assert np.array_equal(back["ids"], arrays["ids"])

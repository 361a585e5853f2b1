"""The tensors of a training-trajectory fixture (``NAME.safetensors`` beside ``NAME.json``), read
through :mod:`cavkit.safetensors_io`: state dicts by prefix, single tensors, scaled int8 inputs kept
in another file, and one :class:`FixtureError` for a damaged or incomplete file."""

from __future__ import annotations

import json

import pytest
import torch

from cavkit.io import write_bytes_atomic
from cavkit.safetensors_io import safetensors_bytes
from cavkit.verify.fixture import FixtureError, Trajectory

INIT = {"init.module.w": torch.arange(6.0).reshape(2, 3), "init.module.b": torch.tensor([1.0, -1.0])}
FINAL = {"final.module.w": torch.full((2, 3), 0.5), "final.module.b": torch.zeros(2)}
NOISE = {"noise.train.audio": torch.rand(2, 2, 4), "noise.train.image": torch.rand(2, 2, 3)}
AUDIO_Q = torch.tensor([[[16, -32], [8, 0]]], dtype=torch.int8)


def _fixture(tmp_path, tensors, data=None):
    """``traj.json`` (2 steps of 2 items, one epoch) beside ``traj.safetensors`` holding ``tensors``."""
    meta = {
        "constructor": {},
        "args": {},
        "order": [[[0, 1], [2, 3]]],
        "steps": [{"loss": 1.0}, {"loss": 0.5}],
        "data": data or {},
    }
    (tmp_path / "traj.json").write_text(json.dumps(meta))
    write_bytes_atomic(str(tmp_path / "traj.safetensors"), safetensors_bytes(tensors))
    return Trajectory(str(tmp_path / "traj.json"))


def test_state_dicts_and_tensors_are_read_by_name(tmp_path):
    traj = _fixture(tmp_path, {**INIT, **FINAL, **NOISE})
    traj.check_tensors()
    init = traj.state("init")
    assert set(init) == {"w", "b"} and all(torch.equal(init[k], INIT[f"init.module.{k}"]) for k in init)
    assert torch.equal(traj.state("final")["w"], FINAL["final.module.w"])
    assert torch.equal(traj.tensor("noise.train.image"), NOISE["noise.train.image"])
    assert traj.has("noise.train.audio") and not traj.has("label.train")
    with pytest.raises(FixtureError, match=r"traj.safetensors: tensor 'label.train' is missing"):
        traj.tensor("label.train")
    with pytest.raises(FixtureError, match=r"no ema.module.\* tensors"):
        traj.state("ema")


def test_inputs_in_another_file_are_scaled_as_the_json_says(tmp_path):
    write_bytes_atomic(
        str(tmp_path / "inputs.safetensors"),
        safetensors_bytes({"data.audio_q": AUDIO_Q, "data.image_q": torch.ones(1, 3, 2, 2, dtype=torch.int8)}),
    )
    traj = _fixture(tmp_path, {**INIT, **FINAL}, {"inputs": "inputs.safetensors: data.audio_q.float() / 16"})
    audio, image = traj.inputs()
    assert torch.equal(audio, AUDIO_Q.float() / 16) and torch.equal(image, torch.full((1, 3, 2, 2), 1 / 16))


def test_a_damaged_tensors_file_is_one_fixture_error(tmp_path):
    traj = _fixture(tmp_path, {**INIT, **FINAL, **NOISE})
    data = (tmp_path / "traj.safetensors").read_bytes()
    (tmp_path / "traj.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FixtureError, match=r"traj.safetensors: not a readable safetensors file"):
        traj.check_tensors()


def test_a_damaged_inputs_file_is_one_fixture_error(tmp_path):
    (tmp_path / "inputs.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    traj = _fixture(tmp_path, {**INIT, **FINAL}, {"inputs": "inputs.safetensors (divide by 16)"})
    with pytest.raises(FixtureError, match=r"inputs.safetensors: not a readable safetensors file"):
        traj.inputs()

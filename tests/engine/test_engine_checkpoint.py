"""Checkpoint files: atomic writes, keep_last, latest, memory:// round trips, RNG capture."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from cavkit import io as cavkit_io
from cavkit.engine import checkpoint as ckpt
from cavkit.errors import CheckpointError


def test_round_trip_on_memory_filesystem_and_latest() -> None:
    run = "memory://engine-ckpt/run"
    for step in (3, 10, 7):
        ckpt.save_object({"format": ckpt.FORMAT, "version": 1, "step": torch.tensor(step)},
                         ckpt.join(run, "checkpoints", ckpt.checkpoint_name(step)))
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [3, 7, 10]
    latest = ckpt.latest_checkpoint(run)
    assert latest.endswith("step-00000010.pt")
    assert int(ckpt.load_object(latest)["step"]) == 10
    assert ckpt.prune_checkpoints(run, keep_last=2)[0].endswith("step-00000003.pt")
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [7, 10]


def test_crash_mid_write_leaves_no_valid_looking_file(tmp_path: Path, monkeypatch) -> None:
    run = str(tmp_path / "run")
    good = ckpt.join(run, "checkpoints", ckpt.checkpoint_name(1))
    ckpt.save_object({"format": ckpt.FORMAT, "version": 1, "w": torch.ones(1000)}, good)
    before = Path(good).read_bytes()

    real = cavkit_io._write_chunks

    def crash_after_first_chunk(handle, data):
        handle.write(data[: len(data) // 3])
        raise KeyboardInterrupt("simulated crash while writing")

    monkeypatch.setattr(cavkit_io, "_write_chunks", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_object({"format": ckpt.FORMAT, "version": 1, "w": torch.zeros(100_000)},
                         ckpt.join(run, "checkpoints", ckpt.checkpoint_name(2)))
    monkeypatch.setattr(cavkit_io, "_write_chunks", real)
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert files == ["step-00000001.pt"], files  # no partial step-2 file, no temp file left behind
    assert ckpt.latest_checkpoint(run) == good and Path(good).read_bytes() == before


def test_partial_temp_file_is_ignored_by_latest(tmp_path: Path) -> None:
    """A temporary file left by a killed process (SIGKILL: no cleanup) is never taken as a checkpoint."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / ".step-00000009.pt.1234.tmp").write_bytes(b"PK\x03\x04truncated")
    assert ckpt.latest_checkpoint(str(tmp_path / "run")) is None


def test_truncated_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "step-00000001.pt"
    ckpt.save_object({"format": ckpt.FORMAT, "version": 1, "w": torch.ones(10_000)}, str(path))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.load_object(str(path))
    with pytest.raises(CheckpointError, match="not a cavkit training checkpoint"):
        ckpt.check_checkpoint({"model": {}}, "x.pt")


def test_rng_capture_restores_every_generator_and_loads_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.rand(3), np.random.rand(), random.random()
    state = ckpt.capture_rng()
    uri = str(tmp_path / "rng.pt")
    ckpt.save_object({"rng": state}, uri)
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    ckpt.restore_rng(ckpt.load_object(uri)["rng"])  # torch.load(weights_only=True) inside
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]


def test_weights_file_round_trip(tmp_path: Path) -> None:
    uri = str(tmp_path / "w" / "final.safetensors")
    ckpt.save_weights({"a": torch.arange(6.0).reshape(2, 3)}, uri, {"step": "5"})
    assert torch.equal(ckpt.model_state_from_file(uri)["a"], torch.arange(6.0).reshape(2, 3))

"""Kill-and-resume: a run SIGKILLed mid-run and resumed ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import engine_helpers as h
from cavkit.engine import checkpoint as ckpt

SCRIPT = Path(__file__).resolve().parent / "train_script.py"


def run_script(recipe: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), str(recipe), str(run_dir), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def final_state(run_dir: Path) -> dict:
    state = ckpt.load_object(ckpt.latest_checkpoint(str(run_dir)))
    return {"model": state["model"], "objectives": state["objectives"], "optimizer": state["optimizer"]["state"],
            "progress": state["progress"]}


def assert_bitwise_equal(a, b, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{path}.{key}")
    else:
        assert a == b, f"{path}: {a} != {b}"


@pytest.mark.parametrize(
    "kill_at, override",
    [
        pytest.param(5, {}, id="mid-epoch"),  # mid-epoch (6 steps per epoch, checkpoints every 2 steps: resumes from step 4)
        pytest.param(
            7,
            {"trainer": {"grad_accum": 2, "batch_size": 2, "balanced_sampling": True, "masking_noise": "device"},
             "data": {"train": {"weighted": True}}},
            marks=pytest.mark.slow,
            id="epoch-boundary-accum-balanced-device-noise",
        ),
    ],
)
def test_killed_run_resumes_bitwise(tmp_path: Path, kill_at: int, override: dict) -> None:
    data = h.tiny_recipe(run={"checkpoint_every_steps": 2, "keep_last": 2},
                         trainer={"epochs": 3, "schedule": {"type": "cosine", "warmup_steps": 3}})
    data = h.merge(data, override)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(data))

    done = run_script(recipe, tmp_path / "straight")
    assert done.returncode == 0, done.stderr

    killed = run_script(recipe, tmp_path / "killed", "--kill-at-step", str(kill_at))
    assert killed.returncode == -9, f"expected SIGKILL, got {killed.returncode}: {killed.stderr}"
    steps = [s for s, _ in ckpt.list_checkpoints(str(tmp_path / "killed"))]
    assert steps and max(steps) < kill_at and max(steps) < 18, steps
    assert not (tmp_path / "killed" / "weights" / "final.safetensors").exists()

    resumed = run_script(recipe, tmp_path / "killed", "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr

    straight, again = final_state(tmp_path / "straight"), final_state(tmp_path / "killed")
    assert straight["progress"]["step"] == again["progress"]["step"] == 18
    assert_bitwise_equal(straight, again)
    manifest = yaml.safe_load((tmp_path / "killed" / "manifest.json").read_text())
    assert len(manifest["starts"]) == 2 and manifest["starts"][1]["resumed_from"].endswith(f"step-{max(steps):08d}.pt")


def test_resume_in_process_mid_epoch_matches(tmp_path: Path) -> None:
    """Stop after step 3 (mid-epoch, via max_steps-free callback) and resume in the same process."""
    data = h.tiny_recipe(trainer={"epochs": 2}, run={"checkpoint_every_steps": 3})
    straight = h.make_trainer(data, str(tmp_path / "a"), tmp_path / "ra")
    straight.fit()

    class Stop(Exception):
        pass

    def stop(trainer):
        if trainer.step == 3:
            raise Stop

    first = h.make_trainer(data, str(tmp_path / "b"), tmp_path / "rb", on_step_end=[stop])
    with pytest.raises(Stop):
        first.fit()
    second = h.make_trainer(data, str(tmp_path / "b"), tmp_path / "rb")
    second.fit(resume=str(tmp_path / "b" / "checkpoints" / "step-00000003.pt"))
    assert_bitwise_equal(h.model_state(straight), h.model_state(second))


def test_resume_latest_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    from cavkit.errors import CheckpointError

    trainer = h.make_trainer(h.tiny_recipe(), str(tmp_path / "empty"), tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        trainer.fit(resume="latest")

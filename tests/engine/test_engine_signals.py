"""SIGTERM and Ctrl-C on a real ``cavkit train`` process: a checkpoint at the next step, consistent
metrics, a resume message and exit 128+signal; a second Ctrl-C stops at once; DataLoader workers do
not swallow Ctrl-C; resuming ends bitwise equal to an uninterrupted run with every step logged once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cavkit.engine import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "cav_mae_tiny.yaml"  # 32 clips, batch 8: 4 steps per epoch
ENV = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
EPOCHS = ["--set", "trainer.epochs=8", "--set", "trainer.cpu_threads=1"]  # 32 steps


def command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cavkit", "train", str(TINY), "--run-dir", str(run_dir), *extra]


def run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(run_dir, *extra), capture_output=True, text=True, env=ENV, timeout=600, check=False)


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    # a session of its own: os.killpg reaches the trainer and its DataLoader workers, as a terminal's Ctrl-C does
    return subprocess.Popen(command(run_dir, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int = 1) -> None:
    """Until metrics.jsonl shows a train record of ``step`` (the run is live and past its first step)."""
    deadline = time.monotonic() + 300
    while not any(r["kind"] == "train" and r["step"] >= step for r in records(run_dir)):
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no training record within 300 s"
        time.sleep(0.01)


def final_state(run_dir: Path) -> dict:
    state = ckpt.load_object(ckpt.latest_checkpoint(str(run_dir)))
    return {"model": state["model"], "optimizer": state["optimizer"]["state"], "step": state["progress"]["step"]}


def assert_same(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] == 32
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, slots in a["optimizer"].items():
        for name, value in slots.items():
            assert torch.equal(value, b["optimizer"][index][name]), (index, name)


def assert_each_step_once(run_dir: Path) -> None:
    logged = records(run_dir)
    assert sorted(r["step"] for r in logged if r["kind"] == "train") == list(range(1, 33))
    assert [r["epoch"] for r in logged if r["kind"] == "epoch"] == list(range(1, 9))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    done = run(run_dir, *EPOCHS)
    assert done.returncode == 0, done.stderr
    return final_state(run_dir)


def stop_message_step(stderr: str, name: str, *, torchrun: bool = False) -> int:
    match = re.search(rf"{name}: stopped after step (\d+) of 32; checkpoint (\S+); resume with: (.+)", stderr)
    assert match, stderr
    step, checkpoint, resume = int(match.group(1)), match.group(2), match.group(3)
    assert checkpoint.endswith(f"step-{step:08d}.pt") and Path(checkpoint).exists()
    launcher = "torchrun <the same launcher options> -m " if torchrun else ""
    assert resume.startswith(f"{launcher}cavkit train {TINY} --run-dir ") and resume.endswith("--resume latest")
    return step


def test_sigterm_checkpoints_the_step_and_resume_is_bitwise_equal(tmp_path: Path, straight: dict) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, *EPOCHS)
    wait_for_step(proc, run_dir)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    step = stop_message_step(stderr, "SIGTERM")
    assert 1 <= step < 32
    # the checkpoint is of the step the signal interrupted, not the last scheduled one (every 4 steps)
    assert [s for s, _ in ckpt.list_checkpoints(str(run_dir))][-1] == step
    assert max(r["step"] for r in records(run_dir)) == step  # metrics consistent with the checkpoint

    resumed = run(run_dir, *EPOCHS, "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr
    assert "changed settings" not in resumed.stderr  # the same command: nothing to apply or refuse
    assert_same(straight, final_state(run_dir))
    assert_each_step_once(run_dir)


def test_ctrl_c_with_dataloader_workers_is_never_swallowed(tmp_path: Path, straight: dict) -> None:
    """A terminal's Ctrl-C signals the whole process group: the trainer and both DataLoader workers."""
    run_dir = tmp_path / "run"
    workers = ["--set", "trainer.num_workers=2"]
    proc = start(run_dir, *EPOCHS, *workers)
    wait_for_step(proc, run_dir)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "exited unexpectedly" not in stderr
    step = stop_message_step(stderr, "SIGINT")
    assert [s for s, _ in ckpt.list_checkpoints(str(run_dir))][-1] == step
    resumed = run(run_dir, *EPOCHS, *workers, "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr
    assert_same(straight, final_state(run_dir))
    assert_each_step_once(run_dir)


def test_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # one optimiser step of 16 micro-batches takes about a second: the second Ctrl-C lands inside it
    proc = start(run_dir, "--set", "trainer.max_steps=20", "--set", "trainer.grad_accum=16",
                 "--set", "data.train.num_clips=128", "--set", "trainer.cpu_threads=1")
    wait_for_step(proc, run_dir)
    before = [s for s, _ in ckpt.list_checkpoints(str(run_dir))]
    os.kill(proc.pid, signal.SIGINT)
    seen = ""
    while "SIGINT received" not in seen:  # the first Ctrl-C was handled: now the second one
        line = proc.stderr.readline()
        assert line, f"the run ended before handling Ctrl-C: {seen}"
        seen += line
    os.kill(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=300)
    stderr = seen + rest
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "stopped at once" in stderr and "without a new checkpoint" in stderr and "Traceback" not in stderr
    assert [s for s, _ in ckpt.list_checkpoints(str(run_dir))] == before
    assert not list(run_dir.glob("**/.*.tmp"))


def worker_pid(agent: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with ``RANK=rank`` (from /proc), or None while not started."""
    try:
        children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def torchrun(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "cavkit", "train", str(TINY), "--run-dir", str(run_dir), "--device", "cpu", *extra]


@pytest.mark.slow
def test_sigterm_to_one_ddp_rank_stops_both_at_the_same_step(tmp_path: Path) -> None:
    """Under torchrun (2 CPU processes, gloo) the ranks agree on a stop; the resumed run matches a straight one."""
    settings = ["--set", "trainer.epochs=8", "--set", "trainer.batch_size=4", "--set", "trainer.cpu_threads=1"]
    straight = subprocess.run(torchrun(tmp_path / "straight", *settings), capture_output=True, text=True,
                              env=ENV, timeout=600, check=False)
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(torchrun(run_dir, *settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, start_new_session=True)
    wait_for_step(proc, run_dir)
    rank1 = worker_pid(proc.pid, 1)
    if rank1 is None:
        proc.kill()
        pytest.skip("cannot find torchrun's worker processes through /proc")
    os.kill(rank1, signal.SIGTERM)  # rank 0 gets nothing: it must still stop at the same step
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    step = stop_message_step(stderr, "SIGTERM", torchrun=True)
    assert [s for s, _ in ckpt.list_checkpoints(str(run_dir))][-1] == step
    resumed = subprocess.run(torchrun(run_dir, *settings, "--resume", "latest"), capture_output=True, text=True,
                             env=ENV, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert_same(final_state(tmp_path / "straight"), final_state(run_dir))
    assert_each_step_once(run_dir)

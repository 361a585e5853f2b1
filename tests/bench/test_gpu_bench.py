"""bench/gpu.py runs end to end (``--tiny`` on CPU) and its table holds what issue 15 asks for."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_bench(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(REPO / "bench/gpu.py"), "--tiny", "--json", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench/gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def device_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``bench/gpu_device.sh --tiny``: the device call's command, with the tiny bench, on CPU."""
    out = tmp_path_factory.mktemp("device_out")
    env = {**os.environ, "OUT": str(out), "CUDA_VISIBLE_DEVICES": "", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(REPO / "bench/gpu_device.sh"), "--tiny"], capture_output=True, text=True,
                          env=env, timeout=400)
    return out, done


def test_device_script_leaves_the_table_and_the_gpu_test_report(device_run) -> None:
    out, done = device_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "gpu.json", "gpu.txt", "pytest.txt", "pytest.xml"]
    assert "largest per-device batch" in (out / "gpu.txt").read_text()
    junit = (out / "pytest.xml").read_text()
    # every GPU test was collected and, on this CPU-only machine, skipped for want of CUDA (none failed)
    assert 'tests="9"' in junit and 'skipped="9"' in junit and 'failures="0"' in junit and 'errors="0"' in junit
    assert "bench exit status 0, tests exit status 0" in done.stdout


def test_gpu_bench_runs_tiny_on_cpu(device_run) -> None:
    out, done = device_run
    report = json.loads((out / "gpu.json").read_text())
    assert report["errors"] == [] and report["skipped"] == []

    modes = ["fp32 eager", "fp16 eager + GradScaler", "bf16 sdpa", "bf16 sdpa + compile"]
    assert [(r["model"], r["mode"]) for r in report["steps"]] == [(m, x) for m in ("cav_mae", "cav_mae_sync") for x in modes]
    for row in report["steps"]:
        assert math.isfinite(row["step_s"]) and row["step_s"] > 0, row
        assert row["samples_per_s"] == row["batch"] / row["step_s"]
        assert row["flops"] > 0 and row["mfu"] == row["flops"] / row["step_s"] / 989e12
    for model in ("cav_mae", "cav_mae_sync"):
        rows = {r["mode"]: r for r in report["steps"] if r["model"] == model}
        fp32 = rows["fp32 eager"]["first_loss"]
        # same weights, batch and masking noise: every setting's first loss is the fp32 one up to rounding
        assert abs(rows["fp16 eager + GradScaler"]["first_loss"] - fp32) <= 5e-3 * fp32
        assert abs(rows["bf16 sdpa"]["first_loss"] - fp32) <= 2e-2 * fp32
        assert rows["bf16 sdpa + compile"]["first_loss"] == rows["bf16 sdpa"]["first_loss"]
    # the batch search doubles from 4 to the --tiny cap of 16 without running out of memory
    assert report["max_batch"] == [{"model": m, "batch": 16, "capped": True, "stopped": False}
                                   for m in ("cav_mae", "cav_mae_sync")]
    assert {(r["dataset"], r["workers"]) for r in report["loaders"]} == {
        (d, w) for d in ("cav_mae", "cav_mae_sync") for w in (0, 1)}
    for row in report["loaders"]:
        fastest = max((r for r in report["steps"] if r["model"] == row["dataset"]), key=lambda r: r["samples_per_s"])
        assert row["items_per_s"] > 0 and row["vs_mode"] == fastest["mode"]
        assert row["vs_step"] == row["items_per_s"] / fastest["samples_per_s"]
    assert [r["strategies"] for r in report["retrieval"]] == ["diagonal_mean + diagonal_max + mean", "max"]
    # visual = audio + noise: every strategy ranks the true partner first far above chance (1/64)
    assert all(r1 > 20 for row in report["retrieval"] for r1 in row["R1_audio"].values())
    assert "bf16 sdpa + compile" in done.stdout and "largest per-device batch" in done.stdout
    assert not (out / "gpu.json.partial").exists()  # every save replaced the report whole


def test_a_failing_setting_costs_only_its_row_and_the_budget_skips_later_sections(tmp_path: Path) -> None:
    """An unknown compile backend fails the compiled row only; the budget then skips what is left."""
    out = tmp_path / "gpu.json"
    done = run_bench(out, "--models", "cav_mae", "--compile-backend", "no_such_backend",
                     "--sections", "steps", "retrieval", "max_batch", "--budget-s", "0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert [("step_s" in r, r["mode"]) for r in report["steps"]] == [
        (True, "fp32 eager"), (True, "fp16 eager + GradScaler"), (True, "bf16 sdpa"), (False, "bf16 sdpa + compile")]
    assert [e["where"] for e in report["errors"]] == ["steps/cav_mae/bf16 sdpa + compile"]
    assert "no_such_backend" in report["errors"][0]["error"] and "Traceback" in done.stderr
    # the four settings of a model take well over half a second, so the later sections never start
    assert report["skipped"] == ["retrieval", "max_batch"] and report["loaders"] == []
    assert "FAILED steps/cav_mae/bf16 sdpa + compile" in done.stdout


def test_batch_search_bisects_to_the_memory_limit(gpu_bench, monkeypatch) -> None:
    args = gpu_bench.parse_args(["--batch", "4", "--max-batch", "4096"])
    tried = []

    def fits(name, batch, args, device):
        tried.append(batch)
        return batch <= 37  # as if batch 38 ran out of memory

    monkeypatch.setattr(gpu_bench, "fits", fits)
    found = gpu_bench.largest_batch("cav_mae", args, "cpu", lambda: False)
    assert found == {"model": "cav_mae", "batch": 36, "capped": False, "stopped": False}
    assert tried[:5] == [4, 8, 16, 32, 64]  # doubling from --batch until the first failure, then bisection


def test_batch_search_stops_when_the_time_budget_is_spent(gpu_bench, monkeypatch) -> None:
    args = gpu_bench.parse_args(["--batch", "4", "--max-batch", "4096"])
    monkeypatch.setattr(gpu_bench, "fits", lambda name, batch, args, device: True)
    checks = iter([False, False, True])  # the budget runs out before the third try
    found = gpu_bench.largest_batch("cav_mae", args, "cpu", lambda: next(checks))
    assert found == {"model": "cav_mae", "batch": 8, "capped": False, "stopped": True}


def test_a_failing_batch_search_is_a_failed_row_not_a_batch(gpu_bench, monkeypatch, capsys) -> None:
    def broken(name, args, device, out_of_time):
        raise RuntimeError(f"no memory statistics for {name}")

    monkeypatch.setattr(gpu_bench, "largest_batch", broken)
    report = gpu_bench.main(["--tiny", "--device", "cpu", "--sections", "max_batch"])
    assert report["max_batch"] == [{"model": "cav_mae", "failed": True}, {"model": "cav_mae_sync", "failed": True}]
    assert [e["where"] for e in report["errors"]] == ["max_batch/cav_mae", "max_batch/cav_mae_sync"]
    assert "cav_mae       failed (see errors below)" in capsys.readouterr().out

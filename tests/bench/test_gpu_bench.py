"""bench/gpu.py runs end to end (``--tiny`` on CPU) and its table holds what issue 15 asks for."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_bench_runs_tiny_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(REPO / "bench/gpu.py"), "--tiny", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())

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
    assert report["max_batch"] == [{"model": m, "batch": 16, "capped": True} for m in ("cav_mae", "cav_mae_sync")]
    assert {(r["dataset"], r["workers"]) for r in report["loaders"]} == {
        (d, w) for d in ("cav_mae", "cav_mae_sync") for w in (0, 1)}
    assert all(r["items_per_s"] > 0 for r in report["loaders"])
    assert [r["strategies"] for r in report["retrieval"]] == ["diagonal_mean + diagonal_max + mean", "max"]
    # visual = audio + noise: every strategy ranks the true partner first far above chance (1/64)
    assert all(r1 > 20 for row in report["retrieval"] for r1 in row["R1_audio"].values())
    assert "bf16 sdpa + compile" in done.stdout and "largest per-device batch" in done.stdout

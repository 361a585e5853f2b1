"""2-process gloo DDP on CPU (torchrun) against single-process runs on the same global batch.

* ``negatives: global``: 2 ranks x 4 samples == 1 process x 8 samples (losses and weights).
* ``negatives: local`` (published DataParallel semantics): 2 ranks x 4 == 1 process x 4 with
  ``grad_accum: 2`` (each shard of 4 scores only its own negatives), and != 1 process x 8.
"""

from __future__ import annotations

import json
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


def torchrun(recipe: dict, tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run_dir = tmp / name
    env = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(SCRIPT), str(path), str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir


def single(recipe: dict, tmp: Path, name: str) -> Path:
    trainer = h.make_trainer(recipe, str(tmp / name), tmp / f"{name}-recipe")
    trainer.fit()
    return tmp / name


def losses(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["train/loss"] for line in lines if line["kind"] == "train"]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load_object(ckpt.latest_checkpoint(str(run_dir)))
    return {**state["model"], **{f"objectives.{k}": v for k, v in state["objectives"].items()}}


def close(a: dict, b: dict, atol: float = 2e-5) -> bool:
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=1e-4) for k in a)


def recipe(negatives: str, **trainer) -> dict:
    return h.tiny_recipe(
        objectives=[{"type": "engine_tiny_mse"}, {"type": "engine_tiny_nce", "weight": 0.5, "negatives": negatives}],
        trainer={"epochs": 1, "log_every": 1, "schedule": {"type": "constant"}, **trainer},
        data={"train": {"num_items": 32}},
    )


def test_ddp_global_negatives_match_single_process_global_batch(tmp_path: Path) -> None:
    ddp = torchrun(recipe("global", batch_size=4), tmp_path, "ddp_global")
    ref = single(recipe("global", batch_size=8), tmp_path, "single_b8")
    assert len(losses(ddp)) == len(losses(ref)) == 4
    assert losses(ddp) == pytest.approx(losses(ref), rel=1e-5, abs=1e-6)
    assert close(weights(ddp), weights(ref))


def test_ddp_local_negatives_match_per_device_shards(tmp_path: Path) -> None:
    ddp = torchrun(recipe("local", batch_size=4), tmp_path, "ddp_local")
    shards = single(recipe("local", batch_size=4, grad_accum=2), tmp_path, "single_accum")
    whole = single(recipe("local", batch_size=8), tmp_path, "single_b8")
    assert losses(ddp) == pytest.approx(losses(shards), rel=1e-5, abs=1e-6)
    assert close(weights(ddp), weights(shards))
    # per-device negatives really differ from negatives over the whole global batch
    assert losses(ddp)[0] != pytest.approx(losses(whole)[0], rel=1e-3)
    assert not close(weights(ddp), weights(whole))

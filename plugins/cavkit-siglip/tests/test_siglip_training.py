"""The plugin's recipe trains through `cavkit train` with the real (tiny) Sync model: the sigmoid
loss drives training, its learnable scale and bias are optimised and checkpointed, and the run
ends with a soft_alignment retrieval evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from cavkit.testing import plugin_host, run_cli

import cavkit_siglip.plugin

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart_siglip.yaml"
TINY = [
    "trainer.max_steps=2",
    "trainer.log_every=1",
    "trainer.batch_size=4",
    "data.train.num_clips=8",
    "data.eval.num_clips=4",
    "data.eval.num_frames=4",
]


def test_quickstart_siglip_trains_the_scale_and_bias(tmp_path):
    if not (RECIPE.parents[3] / "recipes" / "quickstart.yaml").exists():
        pytest.skip("recipes/quickstart.yaml (the base recipe) is not beside this plugin")
    run_dir = tmp_path / "run"
    args = ["train", str(RECIPE), "--run-dir", str(run_dir), "--device", "cpu"]
    for item in TINY:
        args += ["--set", item]
    result = run_cli(args, host=plugin_host(cavkit_siglip.plugin))
    assert result.exit_code == 0, result.stderr

    checkpoints = sorted((run_dir / "checkpoints").glob("*.pt"))
    assert checkpoints, f"no checkpoint in {run_dir}"
    objectives = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["objectives"]
    log_scale = next(v for k, v in objectives.items() if k.endswith("log_scale"))
    bias = next(v for k, v in objectives.items() if k.endswith("bias"))
    siglip = yaml.safe_load(RECIPE.read_text())["objectives"][1]
    assert log_scale.item() != pytest.approx(math.log(siglip.get("scale_init", 10.0)), abs=1e-7)
    assert bias.item() != pytest.approx(siglip.get("bias_init", -10.0), abs=1e-7)

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    keys = set().union(*(r.keys() for r in records))
    assert {"train/loss/siglip", "train/siglip/scale", "train/siglip/bias", "train/siglip/c_acc"} <= keys, sorted(keys)
    assert any(k.startswith("eval/retrieval/soft_alignment/") and k.endswith("R@1") for k in keys), sorted(keys)

"""The `cavkit prepare` fix the preflight gives for a missing datafile follows the model's input
declaration and the dataset config, not the dataset's name (issue 14 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cavkit.engine.preflight import run_findings
from cavkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def _findings(tmp_path: Path, model_recipe: str, data: dict) -> list:
    recipe = yaml.safe_load((REPO / "recipes" / "tiny" / model_recipe).read_text())
    recipe["data"] = {"train": data}
    recipe["run"] = {"dir": str(tmp_path / "run")}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return run_findings(load_recipe(str(path), []), run_dir=str(tmp_path / "run"), device="cpu")


@pytest.mark.parametrize(
    "model_recipe, data, command",
    [
        # a Sync model on a dataset whose name says nothing about Sync: the model's declaration decides
        (
            "sync_tiny.yaml",
            {"type": "cav_mae", "num_frames": 4, "image_size": 64},
            "--model cav_mae_sync --frames 4 --image-size 64",
        ),
        ("sync_tiny.yaml", {"type": "cav_mae_sync", "num_frames": 16}, "--model cav_mae_sync --labels"),
        ("cav_mae_tiny.yaml", {"type": "cav_mae", "num_frames": 10}, "--model cav_mae --labels"),
        (
            "cav_mae_tiny.yaml",
            {"type": "cav_mae_sync", "num_frames": 10, "image_size": 32},
            "--model cav_mae --image-size 32",
        ),
    ],
)
def test_the_prepare_fix_follows_the_model_inputs_and_the_dataset_config(tmp_path, model_recipe, data, command):
    missing = tmp_path / "nowhere" / "datafile.json"
    findings = _findings(tmp_path, model_recipe, {**data, "datafile": str(missing)})
    (finding,) = [f for f in findings if f.where == "data.train.datafile"]
    assert finding.message == f"{missing} does not exist"
    assert f"`cavkit prepare VIDEOS --out DIR {command}" in finding.fix

"""Shared helpers for the engine tests: a tiny recipe, loading it, training it in-process."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

TINY = {
    "seed": 3,
    "model": {"type": "engine_tiny_model"},
    "objectives": [{"type": "engine_tiny_mse", "weight": 1.0}, {"type": "engine_tiny_nce", "weight": 0.5}],
    "data": {"train": {"type": "engine_tiny_data", "num_items": 24}},
    "trainer": {
        "epochs": 2, "batch_size": 4, "log_every": 2, "progress_bar": False,
        "optimizer": {"lr": 0.01}, "schedule": {"type": "cosine", "warmup_steps": 2},
    },
    "run": {"keep_last": 2, "tensorboard": False},
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def tiny_recipe(**override: Any) -> dict:
    return merge(TINY, override)


def host():
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import tiny_plugin

    from cavkit.plugins import build_plugin_host

    return build_plugin_host(autoload=False, extra_plugins=(tiny_plugin,), strict=True)


def load(data: dict, path: Path, plugin_host=None):
    from cavkit.recipe import load_recipe

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path), host=plugin_host or host())


def make_trainer(data: dict, run_dir: str, tmp: Path, *, dist=None, plugin_host=None, **kwargs):
    from cavkit.engine.dist import DistInfo
    from cavkit.engine.trainer import Trainer

    recipe = load(data, tmp / "recipe.yaml", plugin_host)
    return Trainer(recipe, run_dir=run_dir, dist=dist or DistInfo(), argv=["test"], **kwargs)


def model_state(trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.train_step.state_dict().items()}

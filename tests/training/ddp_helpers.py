"""Shared by the DataParallel-semantics test and the script it runs under torchrun.

Tiny real models (``cav_mae`` with the shipped ``infonce``, ``cav_mae_sync`` with the shipped
``sync_contrastive``) on the synthetic set; :func:`first_step_grads` trains one step with the
engine's :class:`~cavkit.engine.trainer.Trainer` and returns the gradients the optimiser received
(read in a ``torch.optim`` step pre-hook, i.e. after DDP's all-reduce).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from cavkit.testing import tiny_model

MODELS = {"infonce": tiny_model("cav_mae", audio_length=64), "sync_contrastive": tiny_model("cav_mae_sync")}
DATA = {
    "infonce": {"type": "synthetic", "layout": "cav_mae", "num_clips": 16, "image_size": 32, "audio_length": 64},
    "sync_contrastive": {"type": "synthetic", "layout": "sync", "num_clips": 16, "image_size": 32,
                         "audio_length": 64, "segment_length": 32},
}


def recipe(objective: str, *, negatives: str, sum_device_losses: bool, batch_size: int) -> dict[str, Any]:
    return {
        "cavkit": 1, "seed": 5, "model": MODELS[objective],
        "objectives": [{"type": "mae", "weight": 1.0},
                       {"type": objective, "weight": 0.5, "negatives": negatives, "direction": "both"}],
        "data": {"train": DATA[objective]},
        "trainer": {"max_steps": 1, "batch_size": batch_size, "sum_device_losses": sum_device_losses,
                    "log_every": 1, "progress_bar": False, "eval_every_epochs": 0,
                    "optimizer": {"lr": 1e-3}, "schedule": {"type": "constant"}},
        "run": {"tensorboard": False, "keep_last": 1},
    }


def host():
    from cavkit.plugins import build_plugin_host

    return build_plugin_host(autoload=False, strict=True)


def trainer(data: dict[str, Any], path: Path, run_dir: Path, dist=None):
    from cavkit.engine.dist import DistInfo
    from cavkit.engine.trainer import Trainer
    from cavkit.recipe import load_recipe

    path.write_text(yaml.safe_dump(data))
    return Trainer(load_recipe(str(path), host=host()), run_dir=str(run_dir), dist=dist or DistInfo(), argv=["test"])


def first_step_grads(t) -> dict[str, torch.Tensor | None]:
    """Train one step; the gradients (``None``: no gradient) each trainable parameter had at ``optimizer.step``."""
    grads: dict[str, torch.Tensor | None] = {}
    named = [(n, p) for n, p in t.train_step.named_parameters() if p.requires_grad]

    def grab(optimizer, args, kwargs):
        if not grads:
            grads.update({n: None if p.grad is None else p.grad.detach().clone() for n, p in named})

    t.optimizer.register_step_pre_hook(grab)
    t.fit()
    return grads

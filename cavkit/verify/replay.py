"""Replaying a trajectory through :class:`cavkit.engine.trainer.Trainer`, exactly as ``cavkit train`` runs.

The recipe from :mod:`cavkit.verify.recipe` is written to the run directory and loaded with
:func:`cavkit.recipe.load_recipe` (so ``--set`` overrides apply as they do for ``cavkit train``).
The initial weights go in through ``trainer.init`` (the fixture's ``init.module.*`` written as an
upstream checkpoint); the batch order and masking noise through the trainer's public seams
``trainer.plan`` and ``trainer.noise`` (:mod:`cavkit.verify.sources`). What the run did is read
back from what every run leaves: ``metrics.jsonl`` (per-step losses, ``log_every: 1``) and
``weights/final.safetensors``; the learning rate a step used is taken in an optimiser step
pre-hook, the parameter norms after each step in an ``on_step_end`` callback.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
import torch
import yaml

from cavkit.checkpoints import keys as K
from cavkit.errors import RecipeError
from cavkit.io import write_bytes_atomic
from cavkit.safetensors_io import read_safetensors, safetensors_bytes
from cavkit.verify.fixture import FixtureError, Trajectory
from cavkit.verify.recipe import recipe_data
from cavkit.verify.sources import RecordedNoise, RecordedOrder


@attrs.define
class ReplayResult:
    """What cavkit did: per-step logged scalars, learning rates per group kind, parameter norms, final weights."""

    recipe: Any
    steps: list[dict[str, float]]
    lrs: list[list[float]]
    param_norms: list[dict[str, float]]
    epochs: list[dict[str, Any]]
    final: dict[str, torch.Tensor]
    targets: tuple[torch.Tensor, torch.Tensor] | None


def _group_lrs(optimizer: torch.optim.Optimizer, head_lr_scale: float) -> list[float]:
    """Learning rates in the published group order: backbone first, then the head (one value per kind).

    With ``freeze_base`` cavkit has no backbone group, while upstream keeps one of frozen parameters
    at ``lr``: its rate is reported as the head's divided by ``head_lr_scale``.
    """
    seen: dict[bool, float] = {}
    for group in optimizer.param_groups:
        seen.setdefault(str(group.get("name", "base")).startswith("head"), group["lr"])
    if True in seen and False not in seen and head_lr_scale > 0:
        seen[False] = seen[True] / head_lr_scale
    return [seen[k] for k in (False, True) if k in seen]


def _write_init(traj: Trajectory, path: str) -> None:
    write_bytes_atomic(path, safetensors_bytes(traj.state("init")))


def _check_init(model: torch.nn.Module, traj: Trajectory) -> None:
    """Every model tensor must hold the fixture's initial value exactly (nothing left fresh)."""
    init = traj.state("init")
    for key, value in model.state_dict().items():
        up = K.cavkit_to_upstream(key)
        if up not in init:
            raise FixtureError(f"{traj.name}: the model's {key} ({up}) has no init.module.{up} tensor")
        if not torch.equal(value.cpu(), init[up]):
            raise FixtureError(f"{traj.name}: {key} did not receive init.module.{up} (the model differs from the constructor)")


def _read_metrics(run_dir: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "epoch"]


def replay(traj: Trajectory, overrides: list[str], *, run_dir: str, host: Any) -> ReplayResult:
    """Train the fixture's run with cavkit in ``run_dir`` (a local directory) and collect what happened."""
    from cavkit.engine.dist import DistInfo
    from cavkit.engine.trainer import Trainer
    from cavkit.recipe import load_recipe

    traj.check_tensors()
    os.makedirs(run_dir, exist_ok=True)
    init = os.path.join(run_dir, "published_init.safetensors")
    _write_init(traj, init)
    recipe_path = os.path.join(run_dir, "replay_recipe.yaml")
    with open(recipe_path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(recipe_data(traj, init=init, run_dir=run_dir), fh, sort_keys=False)
    try:
        recipe = load_recipe(recipe_path, list(overrides), host=host)
    except RecipeError as exc:  # name the fixture, not the temporary file
        raise RecipeError(f"{traj.name} (its replay recipe: cavkit verify trajectory --show-recipe)", exc.problems) from None

    trainer = Trainer(recipe, run_dir=run_dir, dist=DistInfo(), versions=host.versions(), argv=["cavkit", "verify"],
                      host=host)
    _check_init(trainer.model, traj)
    cfg = recipe.trainer
    if cfg.batch_size != traj.batch_size or cfg.grad_accum != 1:
        raise FixtureError(
            f"{traj.name}: the recorded order and masking noise are per step of {traj.batch_size} clips; keep "
            f"trainer.batch_size={traj.batch_size} and trainer.grad_accum=1 (got {cfg.batch_size} and {cfg.grad_accum})"
        )
    trainer.plan = RecordedOrder(traj.order, len(trainer.train_set), recipe.seed)
    if trainer.plan.steps_per_epoch != trainer.steps_per_epoch:
        raise FixtureError(
            f"{traj.name}: 'order' has {trainer.plan.steps_per_epoch} steps per epoch, the engine plans "
            f"{trainer.steps_per_epoch} for {len(trainer.train_set)} clips in batches of {traj.batch_size}"
        )
    trainer.noise = RecordedNoise.from_fixture(traj)

    lrs: list[list[float]] = []
    scale = cfg.optimizer.head_lr_scale
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: lrs.append(_group_lrs(opt, scale)))
    names = traj.meta.get("trace_param_names") or []
    params = dict(trainer.model.named_parameters())
    tracked = [(n, params.get(K.upstream_to_cavkit(n) or "")) for n in names]
    norms: list[dict[str, float]] = []

    def record_norms(t: Trainer) -> None:
        norms.append({n: float(p.detach().float().norm()) for n, p in tracked if p is not None})

    trainer.on_step_end.append(record_norms)
    result = trainer.fit()
    train_rows, epoch_rows = _read_metrics(run_dir)
    final, _ = read_safetensors(result["final_weights"])
    final = {K.cavkit_to_upstream(k) or k: v for k, v in final.items()}
    data = trainer.train_set
    targets = (data.labels, data.recorded_labels) if getattr(data, "recorded_labels", None) is not None else None
    return ReplayResult(recipe, train_rows, lrs, norms, epoch_rows, final, targets)


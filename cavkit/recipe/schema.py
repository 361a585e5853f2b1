"""The sections of a recipe, as attrs classes (no torch imports here).

A recipe's top level::

    cavkit: 1                 # recipe schema version
    base: parent.yaml         # optional, merged first (see cavkit.recipe.load)
    requires: [cavkit-siglip>=0.1]   # distributions that must be installed
    seed: 0
    model: {type: cav_mae_sync, ...}          # a `model` component
    objectives:                               # weighted `objective` components
      - {type: mae, weight: 1.0}
      - {type: infonce, weight: 0.01}
    data: {train: {type: ...}, val: ..., eval: ...}   # `dataset` components
    retrieval: {type: diagonal_mean}          # a `retrieval_strategy` component
    trainer: {...}                            # TrainerConfig
    run: {...}                                # RunConfig
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from cavkit.config import ComponentNode, at_least, component, component_list, in_range, param, structure
from cavkit.errors import Problem, RecipeError

RECIPE_VERSION = 1


@attrs.frozen(kw_only=True)
class DataSection:
    """Datasets by role."""

    train: ComponentNode | None = component("dataset", default=None, help="training set")
    val: ComponentNode | None = component("dataset", default=None, help="validation set (losses each epoch)")
    eval: ComponentNode | None = component("dataset", default=None, help="evaluation set (retrieval, classification)")


@attrs.frozen(kw_only=True)
class OptimizerConfig:
    """Optimiser and parameter groups (spec §7.1: Adam, betas (0.95, 0.999), wd 5e-7)."""

    name: Literal["adam", "adamw"] = param("adam", help="torch.optim.Adam (L2 in the gradient) or AdamW (decoupled)")
    lr: float = param(1e-4, help="base learning rate", validator=at_least(0.0))
    betas: tuple[float, float] = param((0.95, 0.999), help="Adam betas")
    weight_decay: float = param(5e-7, help="weight decay", validator=at_least(0.0))
    head_lr_scale: float = param(1.0, help="learning-rate multiplier for new heads (FT uses 100)", validator=at_least(0.0))
    head_prefixes: list[str] = param(factory=lambda: ["head."], help="parameter-name prefixes that get head_lr_scale")
    no_decay_norm_bias: bool = param(False, help="exclude norms, biases and 1-d params from weight decay")


@attrs.frozen(kw_only=True)
class ScheduleConfig:
    """Learning-rate schedule."""

    type: Literal["constant", "step", "cosine"] = param("step", help="step: MultiStepLR per epoch (CAV-MAE); cosine: warmup + cosine per step (Sync)")
    warmup_steps: int = param(0, help="linear warmup steps (cosine)", validator=at_least(0))
    min_lr: float = param(0.0, help="final learning rate (cosine)", validator=at_least(0.0))
    decay_start: int = param(10, help="first epoch milestone (step)", validator=at_least(0))
    decay_every: int = param(5, help="epochs between milestones (step)", validator=at_least(1))
    gamma: float = param(0.5, help="factor per milestone (step)", validator=in_range(0.0, 1.0))


@attrs.frozen(kw_only=True)
class TrainerConfig:
    """How to train: batches, precision, optimiser, schedule."""

    epochs: int = param(1, help="epochs to train", validator=at_least(1))
    max_steps: int | None = param(None, help="stop after this many optimiser steps (overrides epochs)")
    batch_size: int = param(8, help="batch size per device", validator=at_least(1))
    num_workers: int = param(0, help="DataLoader workers per device", validator=at_least(0))
    precision: Literal["fp32", "bf16", "fp16"] = param("fp32", help="autocast precision")
    grad_accum: int = param(1, help="micro-batches per optimiser step", validator=at_least(1))
    clip_grad: float | None = param(None, help="clip the gradient norm to this value")
    freeze_base: bool = param(False, help="train only the head (linear probing)")
    optimizer: OptimizerConfig = param(factory=OptimizerConfig, help="optimiser")
    schedule: ScheduleConfig = param(factory=ScheduleConfig, help="learning-rate schedule")
    log_every: int = param(10, help="log scalars every N steps", validator=at_least(1))
    eval_every_epochs: int = param(1, help="evaluate every N epochs (0: never)", validator=at_least(0))


@attrs.frozen(kw_only=True)
class RunConfig:
    """Where a run writes (any fsspec URI) and how it keeps checkpoints."""

    dir: str = param("runs/{recipe}", help="run directory; {recipe} is the recipe's file stem")
    checkpoint_every_steps: int | None = param(None, help="also checkpoint every N steps")
    keep_last: int = param(3, help="checkpoints to keep (older ones are deleted)", validator=at_least(1))


@attrs.frozen(kw_only=True)
class Recipe:
    """A whole validated recipe."""

    cavkit: int = param(RECIPE_VERSION, help="recipe schema version")
    requires: list[str] = param(factory=list, help="distributions that must be installed, e.g. cavkit-siglip>=0.1")
    seed: int = param(0, help="global random seed")
    model: ComponentNode = component("model", help="the model")
    objectives: list[ComponentNode] = component_list("objective", weighted=True, help="weighted training objectives")
    data: DataSection = param(factory=DataSection, help="datasets by role")
    retrieval: ComponentNode | None = component("retrieval_strategy", default=None, help="retrieval strategy for evaluation")
    trainer: TrainerConfig = param(factory=TrainerConfig, help="training settings")
    run: RunConfig = param(factory=RunConfig, help="run directory and checkpoints")


def _check_requires(requires: Any) -> list[Problem]:
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    if not isinstance(requires, list):
        return [Problem("requires", "expected a list of requirements like 'cavkit-siglip>=0.1'")]
    for i, item in enumerate(requires):
        try:
            req = Requirement(str(item))
        except InvalidRequirement as exc:
            problems.append(Problem(f"requires.{i}", f"invalid requirement {item!r}: {exc}"))
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(Problem(f"requires.{i}", f"{req.name!r} is not installed; install it with `pip install '{item}'`"))
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(Problem(f"requires.{i}", f"{req.name} {have} is installed but {item!r} is required"))
    return problems


def validate_recipe(data: dict[str, Any], *, source: str, host: Any) -> Recipe:
    """Check recipe data against :class:`Recipe` and the registry; raise with every problem."""
    problems = _check_requires(data.get("requires", []))
    version = data.get("cavkit", RECIPE_VERSION)
    if version != RECIPE_VERSION and isinstance(version, int):
        problems.append(Problem("cavkit", f"recipe schema version {version} is not supported (this cavkit reads {RECIPE_VERSION})"))
    recipe, found = structure(Recipe, data, registry=host.registry, failed_plugins=host.failed_names())
    problems += found
    if problems:
        raise RecipeError(source, problems)
    return recipe

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

import sys
from typing import Any, Literal

import attrs

from cavkit.config import ComponentNode, at_least, component, component_list, finite, in_range, param, structure
from cavkit.errors import Problem, RecipeError

RECIPE_VERSION = 1


def _betas(inst: Any, attr: Any, value: Any) -> None:
    """Adam's betas are decay rates: each in [0, 1) (torch.optim raises on others, mid-run setup)."""
    if value is not None and not all(0.0 <= beta < 1.0 for beta in value):
        raise ValueError(f"each beta must be in [0, 1), got {tuple(value)!r}")


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
    lr: float = param(1e-4, help="base learning rate", validator=[at_least(0.0), finite()])
    betas: tuple[float, float] = param((0.95, 0.999), help="Adam betas, each in [0, 1)", validator=_betas)
    eps: float = param(1e-8, help="Adam epsilon", validator=[at_least(0.0), finite()])
    weight_decay: float = param(5e-7, help="weight decay", validator=[at_least(0.0), finite()])
    head_lr_scale: float = param(1.0, help="learning-rate multiplier for new heads (FT uses 100)", validator=[at_least(0.0), finite()])
    head_prefixes: list[str] = param(factory=lambda: ["head."], help="parameter-name prefixes that get head_lr_scale")
    no_decay_norm_bias: bool = param(False, help="exclude norms, biases and 1-d params from weight decay")


@attrs.frozen(kw_only=True)
class ScheduleConfig:
    """Learning-rate schedule, evaluated per optimiser step (spec §7.1, §7.3)."""

    type: Literal["constant", "step", "cosine"] = param("step", help="step: MultiStepLR per epoch (CAV-MAE); cosine: warmup + cosine per step (Sync)")
    warmup_steps: int = param(0, help="linear warmup steps (cosine)", validator=at_least(0))
    warmup_fraction: float | None = param(None, help="warmup as a fraction of all steps (Sync: 0.1); overrides warmup_steps", validator=in_range(0.0, 1.0))
    warmup_start_factor: float = param(0.0, help="warmup starts at lr * this factor", validator=in_range(0.0, 1.0))
    min_lr: float = param(0.0, help="final learning rate (cosine)", validator=[at_least(0.0), finite()])
    min_lr_ratio: float | None = param(None, help="final learning rate as a fraction of lr (Sync: 0.1); overrides min_lr", validator=in_range(0.0, 1.0))
    decay_start: int = param(10, help="first epoch milestone (step)", validator=at_least(0))
    decay_every: int = param(5, help="epochs between milestones (step)", validator=at_least(1))
    gamma: float = param(0.5, help="factor per milestone (step)", validator=in_range(0.0, 1.0))


@attrs.frozen(kw_only=True)
class WeightAveragingConfig:
    """Average the weights at the end of epochs ``start..end`` (1-based, inclusive; spec §7.1 ``wa``)."""

    start_epoch: int = param(help="first epoch averaged (1-based)", validator=at_least(1))
    end_epoch: int = param(help="last epoch averaged (1-based, inclusive)", validator=at_least(1))

    def __attrs_post_init__(self) -> None:
        if self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch ({self.end_epoch}) must be >= start_epoch ({self.start_epoch})")


@attrs.frozen(kw_only=True)
class TrainerConfig:
    """How to train: batches, precision, optimiser, schedule.

    One optimiser step sees ``batch_size x devices x grad_accum`` samples (the global batch).
    """

    epochs: int = param(1, help="epochs to train", validator=at_least(1))
    max_steps: int | None = param(None, help="stop after this many optimiser steps (overrides epochs)", validator=at_least(1))
    batch_size: int = param(8, help="batch size per device and micro-batch", validator=at_least(1))
    num_workers: int = param(0, help="DataLoader workers per device", validator=at_least(0))
    cpu_threads: int | None = param(None, help="intra-op threads when training on CPU (default: torch's choice); 1 suits small models on busy machines", validator=at_least(1))
    precision: Literal["fp32", "bf16", "fp16"] = param("fp32", help="autocast precision (fp16 adds a gradient scaler)")
    grad_accum: int = param(1, help="micro-batches per optimiser step", validator=at_least(1))
    clip_grad: float | None = param(None, help="clip the gradient norm to this value (null: no clipping)", validator=[at_least(0.0), finite()])
    init: str | None = param(None, help="initialise the model from this checkpoint before training (IN-initial.pth, an official or cavkit checkpoint, weights:NAME, a URL, timm:VIT; expected differences such as a new head, a new aggregator or resized position embeddings are allowed); unused when resuming. The one init setting: model.init is a deprecated alias")
    freeze_base: bool = param(False, help="train only the head parameters (linear probing)")
    balanced_sampling: bool = param(False, help="draw training clips with the dataset's class-balancing weights (with replacement)")
    sum_device_losses: bool = param(False, help="sum instead of average the per-device losses (CAV-MAE's DataParallel did; gradient x devices)")
    masking_noise: Literal["global", "device"] = param("global", help="global: masking noise drawn per global batch from the seed and step (results do not depend on the device count); device: each device's own RNG")
    average_weights: WeightAveragingConfig | None = param(None, help="average the weights of a range of epochs (fine-tuning 'wa')")
    optimizer: OptimizerConfig = param(factory=OptimizerConfig, help="optimiser")
    schedule: ScheduleConfig = param(factory=ScheduleConfig, help="learning-rate schedule")
    log_every: int = param(10, help="log scalars every N steps", validator=at_least(1))
    image_every: int = param(0, help="log reconstruction images every N steps (0: never)", validator=at_least(0))
    eval_every_epochs: int = param(1, help="validate every N epochs (0: never)", validator=at_least(0))
    eval_batch_size: int | None = param(None, help="batch size for validation and evaluation (default: batch_size)", validator=at_least(1))
    progress_bar: bool = param(True, help="show a progress bar in the terminal (rank 0)")


@attrs.frozen(kw_only=True)
class RunConfig:
    """Where a run writes (any fsspec URI) and how it keeps checkpoints."""

    dir: str = param("runs/{recipe}", help="run directory; {recipe} is the recipe's file stem")
    checkpoint_every_steps: int | None = param(None, help="also checkpoint every N steps", validator=at_least(1))
    checkpoint_every_epochs: int = param(1, help="checkpoint at the end of every N epochs", validator=at_least(1))
    keep_last: int = param(3, help="checkpoints to keep (older ones are deleted)", validator=at_least(1))
    tensorboard: bool = param(True, help="write TensorBoard event files under <dir>/tensorboard (rank 0)")


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


def _plugin_not_loaded(dist_name: str, host: Any) -> bool:
    """Whether installed distribution ``dist_name`` declares a ``cavkit`` entry point that ``host`` did not load."""
    from importlib import metadata

    from cavkit.registry import canonical_plugin

    try:
        entry_points = metadata.distribution(dist_name).entry_points
    except metadata.PackageNotFoundError:
        return False
    if not any(ep.group == "cavkit" for ep in entry_points):
        return False
    loaded = {canonical_plugin(p.dist) for p in getattr(host, "plugins", ())}
    return canonical_plugin(dist_name) not in loaded


def _check_requires(requires: Any, host: Any = None) -> list[Problem]:
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
        elif host is not None and _plugin_not_loaded(req.name, host):
            problems.append(Problem(
                f"requires.{i}",
                f"{req.name} {have} is installed but its cavkit plugin is not loaded (entry-point autoload is off, "
                "it is blocked by CAVKIT_BLOCK_PLUGINS, or it failed to load; see `cavkit plugins`)",
            ))
    return problems


def move_model_init(data: dict[str, Any], source: str) -> tuple[dict[str, Any], list[Problem]]:
    """Recipes from before cavkit had one init setting: ``model.init`` moves to ``trainer.init``.

    Prints a deprecation note on stderr. Both set to different checkpoints is a problem (which one
    was meant cannot be guessed); ``model.init: null`` clears ``trainer.init`` as it used to mean "no
    initialisation". :returns: the data to validate and the problems.
    """
    model = data.get("model")
    if not isinstance(model, dict) or "init" not in model:
        return data, []
    value = model["init"]
    trainer = data.get("trainer") if isinstance(data.get("trainer"), dict) else {}
    if value is not None and trainer.get("init") not in (None, value):
        return data, [Problem("model.init", f"model.init ({value!r}) and trainer.init ({trainer['init']!r}) "
                                            "name different checkpoints; model.init is a deprecated alias of "
                                            "trainer.init: keep only trainer.init")]
    print(f"cavkit: warning: {source}: model.init is deprecated; it now is trainer.init "
          "(the one initialisation setting), write it there", file=sys.stderr)
    moved = {**data, "model": {k: v for k, v in model.items() if k != "init"}, "trainer": {**trainer, "init": value}}
    return moved, []


def validate_recipe(data: dict[str, Any], *, source: str, host: Any) -> Recipe:
    """Check recipe data against :class:`Recipe` and the registry; raise with every problem."""
    data, problems = move_model_init(data, source)
    problems += _check_requires(data.get("requires", []), host)
    version = data.get("cavkit", RECIPE_VERSION)
    if version != RECIPE_VERSION and isinstance(version, int):
        problems.append(Problem("cavkit", f"recipe schema version {version} is not supported (this cavkit reads {RECIPE_VERSION})"))
    recipe, found = structure(Recipe, data, registry=host.registry, failed_plugins=host.failed_names())
    problems += found
    if problems:
        raise RecipeError(source, problems)
    return recipe

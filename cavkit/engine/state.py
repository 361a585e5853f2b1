"""What a training checkpoint holds, and putting it back (format in :mod:`cavkit.engine.checkpoint`).

:func:`training_state` gathers model, objectives, optimiser, scheduler, scaler, :class:`Progress`,
every rank's RNG state and the weight-averaging sum into one plain dict; :func:`restore_training_state`
loads such a dict into freshly built parts (on every rank), so that a resumed run continues with
exactly the state of the uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from cavkit.engine import checkpoint as ckpt
from cavkit.engine.dist import DistInfo
from cavkit.errors import CheckpointError


@dataclass
class Progress:
    """How far a run is: optimiser steps done, epochs done, steps into the current epoch, samples seen."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    samples_seen: int = 0


def progress_attribute(name: str) -> property:
    """A read/write attribute of the owner that forwards to ``owner.progress.<name>``."""

    def get(self: Any) -> int:
        return getattr(self.progress, name)

    def put(self: Any, value: int) -> None:
        setattr(self.progress, name, value)

    return property(get, put, doc=f"``progress.{name}``")


@dataclass
class TrainingParts:
    """The stateful parts of a run (unwrapped model; objectives as one ``ModuleList``)."""

    model: nn.Module
    objectives: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler


@dataclass(frozen=True)
class RunFacts:
    """What a checkpoint records about the run that wrote it."""

    recipe_yaml: str
    versions: dict[str, str]
    world_size: int
    global_batch: int
    #: the model's input declaration (:meth:`cavkit.models.inputs.InputSpec.to_json`), ``None`` when unknown;
    #: :func:`cavkit.checkpoints.read.read_checkpoint` prefers it to deriving one from the recipe
    inputs: str | None = None


def _cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def training_state(
    parts: TrainingParts, progress: Progress, *, rng: list[dict[str, Any]], averaging: dict[str, Any] | None, facts: RunFacts
) -> dict[str, Any]:
    """The checkpoint dict (``rng``: one :func:`~cavkit.engine.checkpoint.capture_rng` per rank)."""
    return {
        "format": ckpt.FORMAT,
        "version": ckpt.FORMAT_VERSION,
        "model": _cpu(parts.model),
        "objectives": _cpu(parts.objectives),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "progress": {**asdict(progress), "world_size": facts.world_size, "global_batch": facts.global_batch},
        "rng": rng,
        "averaging": averaging,
        "recipe": facts.recipe_yaml,
        "versions": facts.versions,
        **({"inputs": facts.inputs} if facts.inputs is not None else {}),
    }


def restore_training_state(
    state: dict[str, Any], uri: str, parts: TrainingParts, *, global_batch: int, dist: DistInfo
) -> tuple[Progress, dict[str, Any] | None]:
    """Load a checked checkpoint dict into ``parts`` and this rank's RNGs; returns ``(progress, averaging)``.

    A different global batch is refused (the data order depends on it); a different process count
    restarts the RNG streams with a warning.
    """
    try:
        parts.model.load_state_dict(state["model"], strict=True)
        parts.objectives.load_state_dict(state["objectives"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{uri}: does not match the recipe's model or objectives: {exc}") from None
    saved = state["progress"]
    if saved["global_batch"] != global_batch:
        raise CheckpointError(
            f"{uri}: saved with a global batch of {saved['global_batch']} samples, this run has {global_batch} "
            "(batch_size x devices x grad_accum); resume with the same global batch to keep the data order"
        )
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    progress = Progress(step=saved["step"], epoch=saved["epoch"], step_in_epoch=saved["step_in_epoch"],
                        samples_seen=saved["samples_seen"])
    rng = state["rng"]
    if len(rng) == dist.world_size:
        ckpt.restore_rng(rng[dist.rank])
    elif dist.is_rank_zero:
        print(
            f"cavkit: warning: {uri} was written by {len(rng)} process(es), this run has {dist.world_size}; "
            "RNG streams restart (results will not match an uninterrupted run bitwise)",
            file=sys.stderr,
        )
    return progress, state.get("averaging")

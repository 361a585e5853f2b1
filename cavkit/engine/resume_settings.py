"""Resuming with a changed recipe: which settings may change mid-run, and applying them.

A checkpoint stores the resolved recipe it was trained with. On ``--resume`` the current recipe is
compared with it key by key (dotted paths such as ``trainer.optimizer.lr``; list items by index):

* **may change** (:data:`MUTABLE`): the learning rate, weight decay, gradient clipping, the length
  of the run (``epochs``, ``max_steps``), logging/validation/checkpoint cadence and other settings
  that do not change what one step computes. They are applied from the next step and listed in a
  warning. A new ``lr`` replaces the base learning rate of every parameter group (times
  ``head_lr_scale``); the schedule's factor at the current step is kept (a changed
  ``epochs``/``max_steps`` also changes the schedule's length).
* **fixed** (everything else: seed, model, objectives, training data, optimiser type and betas,
  schedule, batch size, precision, masking noise...): a change is refused with the list of keys,
  unless the user passes ``--allow-changed``, which applies the new values as far as the recipe
  builds them and warns that the run is no longer the one it started as.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch
import yaml

from cavkit.errors import UsageError

MUTABLE = (
    "trainer.optimizer.lr",
    "trainer.optimizer.weight_decay",
    "trainer.clip_grad",
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.log_every",
    "trainer.image_every",
    "trainer.eval_every_epochs",
    "trainer.eval_batch_size",
    "trainer.progress_bar",
    "trainer.num_workers",
    "trainer.cpu_threads",
    "trainer.init",  # unused when resuming
    "run.*",
    "data.eval",
    "data.eval.*",
    "retrieval",
    "retrieval.*",
    "requires",
    "requires.*",
)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix] = value
    return out


def is_mutable(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in MUTABLE)


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def changed_settings(saved_yaml: str, current_yaml: str) -> tuple[list[tuple[str, Any, Any]], list[str]]:
    """``([(key, saved value, current value)], [keys of settings only one recipe has])``.

    A list item only one side has (an objective added or removed) is a change, shown as
    ``(absent)`` on the other side. Any other key only one side has is a setting one cavkit version
    has and the other lacks: it is returned apart, as it says nothing about the user's intent.
    """
    saved = _flatten(yaml.safe_load(saved_yaml) or {}, "", {})
    current = _flatten(yaml.safe_load(current_yaml) or {}, "", {})
    changed, unrecorded = [], []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, _ABSENT), current.get(key, _ABSENT)
        if old == new:
            continue
        in_list = any(part.isdigit() for part in key.split(".")) or isinstance(old, list) or isinstance(new, list)
        if (old is _ABSENT or new is _ABSENT) and not in_list:
            unrecorded.append(key)
        else:
            changed.append((key, old, new))
    return changed, unrecorded


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)


def fresh_hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, float]]:
    """Each group's ``initial_lr`` (falling back to ``lr``) and ``weight_decay`` as the recipe built them."""
    return [{"initial_lr": g.get("initial_lr", g["lr"]), "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]


def apply_hyperparameters(optimizer: torch.optim.Optimizer, scheduler: Any, fresh: list[dict[str, float]]) -> None:
    """Put the recipe's base learning rates and weight decays back after loading a checkpoint.

    ``fresh`` comes from :func:`fresh_hyperparameters` before the load. The current learning rate
    becomes ``new base lr x schedule factor at the current step`` (the schedule's own factor when
    it is a ``LambdaLR``, else the factor the checkpoint was at).
    """
    if len(fresh) != len(optimizer.param_groups):
        return  # groups differ: the optimizer's load_state_dict would already have refused
    lambdas = getattr(scheduler, "lr_lambdas", None)
    step = getattr(scheduler, "last_epoch", 0)
    base_lrs = list(getattr(scheduler, "base_lrs", [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]))
    for i, (group, new) in enumerate(zip(optimizer.param_groups, fresh)):
        if lambdas is not None:
            factor = lambdas[i](step)
        else:
            factor = group["lr"] / base_lrs[i] if base_lrs[i] else 0.0
        group["initial_lr"] = new["initial_lr"]
        group["weight_decay"] = new["weight_decay"]
        group["lr"] = new["initial_lr"] * factor
        base_lrs[i] = new["initial_lr"]
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = base_lrs
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


_SCHEDULE_KEYS = ("trainer.optimizer.lr", "trainer.optimizer.weight_decay", "trainer.epochs", "trainer.max_steps")


class ChangedSettingsError(UsageError):
    """``--resume`` with changes to settings that define the run (seed, model, optimiser, ...)."""


@dataclass(frozen=True)
class ResumeChanges:
    """The differences between a checkpoint's recipe and the current one, split by :func:`is_mutable`."""

    applied: list[tuple[str, Any, Any]]
    forced: list[tuple[str, Any, Any]]  # fixed settings changed anyway with --allow-changed
    unrecorded: list[str]  # settings only one of the two recipes has (written by another cavkit version)

    @property
    def resets_learning_rates(self) -> bool:
        """Whether the optimiser's base learning rates / weight decays must be rebuilt from the recipe."""
        return bool(self.forced) or any(key in _SCHEDULE_KEYS for key, _, _ in self.applied)

    def warnings(self, step: int) -> list[str]:
        lines = []
        if self.applied:
            lines.append(f"cavkit: warning: resuming with changed settings, applied from step {step + 1}: "
                         f"{describe_changes(self.applied)}")
        if self.forced:
            lines.append(f"cavkit: warning: --allow-changed: resuming with settings the run did not start with: "
                         f"{describe_changes(self.forced)}; what follows is not a continuation of the original run")
        if self.unrecorded:
            lines.append("cavkit: note: the checkpoint's recipe and this one differ in which settings they have "
                         f"(another cavkit version): {', '.join(self.unrecorded)}; the current values are used")
        return lines


def review_changes(saved_yaml: str, current_yaml: str, *, uri: str, allow_changed: bool) -> ResumeChanges:
    """Compare the recipes; refuse fixed-setting changes unless ``allow_changed``."""
    changes, unrecorded = changed_settings(saved_yaml, current_yaml)
    applied = [c for c in changes if is_mutable(c[0])]
    fixed = [c for c in changes if not is_mutable(c[0])]
    if fixed and not allow_changed:
        raise ChangedSettingsError(
            f"cannot resume from {uri} with changed settings: {describe_changes(fixed)}. They change what the run "
            "computes: put them back (the checkpoint was trained with the old values), start a new run in another "
            "--run-dir, or pass --allow-changed to resume anyway. On resume only these may change: lr, "
            "weight_decay, clip_grad, epochs, max_steps, logging/validation/checkpoint cadence, data.eval, retrieval"
        )
    return ResumeChanges(applied=applied, forced=fixed, unrecorded=unrecorded)

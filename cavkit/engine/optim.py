"""Optimiser, parameter groups, freezing and learning-rate schedules (spec §7.1, §7.3).

Published semantics (CAV-MAE ``traintest_cavmae.py`` / ``traintest_ft.py``), which the defaults and
the CAV-MAE recipes reproduce and ``cavkit verify trajectory`` checks step by step:

* ``name: adam`` is ``torch.optim.Adam``: weight decay is L2 added to the gradient before the
  moments (``adamw`` decouples it), on every trainable parameter, norms and biases included
  (``no_decay_norm_bias: false``). A parameter whose ``.grad`` is ``None`` after the backward pass
  (no loss reaches it, e.g. the unused ``norm1_a``/``norm1_v`` LayerNorms) is skipped by torch's Adam,
  so not even weight decay moves it; the trainer zeroes gradients with ``set_to_none=True`` and DDP
  leaves globally unused parameters without a gradient, which keeps this true.
* Parameter groups: the parameters whose name starts with one of ``head_prefixes`` train at
  ``lr * head_lr_scale`` (CAV-MAE fine-tuning: ``mlp_head.*``, cavkit ``head.``, at ``head_lr`` x);
  every other trainable parameter is in the base group. With ``no_decay_norm_bias`` norms, biases
  and other 1-d tensors get no weight decay (a timm/MAE habit, not the published recipe).
* Schedules are a multiplier of the base learning rate as a pure function of the optimiser step,
  applied through ``LambdaLR``. ``step`` is upstream's ``MultiStepLR(range(start, 1000, every),
  gamma)`` stepped once per epoch after validation: the lr of epoch ``e`` (1-based) is
  ``lr * gamma ** #{milestones <= e - 1}``. Evaluating that from ``step // steps_per_epoch`` gives the
  same lr at every step (validation uses none) and survives a mid-epoch resume. ``step`` has no
  warmup, like the published loops (their ``--warmup`` flag is never read).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.recipe.schema import OptimizerConfig, ScheduleConfig


def is_head(name: str, prefixes: Iterable[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def freeze_all_but_head(model: nn.Module, prefixes: list[str]) -> int:
    """Linear probing: ``requires_grad=False`` on every non-head parameter. Returns the trainable count."""
    trainable = 0
    for name, param in model.named_parameters():
        keep = is_head(name, prefixes)
        param.requires_grad_(keep)
        trainable += param.numel() if keep else 0
    if trainable == 0:
        raise UsageError(
            f"trainer.freeze_base: no parameter name starts with {prefixes}; "
            "set trainer.optimizer.head_prefixes to the classifier head's prefix"
        )
    return trainable


def _no_decay(name: str, param: torch.Tensor) -> bool:
    """Norm weights, biases and other 1-d tensors (the usual MAE/timm exclusion)."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(
    named: list[tuple[str, torch.Tensor]], config: OptimizerConfig
) -> list[dict]:
    """Split ``named`` trainable parameters into groups ``{params, lr, weight_decay, name}``."""
    buckets: dict[tuple[bool, bool], list[torch.Tensor]] = {}
    for name, param in named:
        if not param.requires_grad:
            continue
        head = is_head(name, config.head_prefixes)
        no_decay = config.no_decay_norm_bias and _no_decay(name, param)
        buckets.setdefault((head, no_decay), []).append(param)
    groups = []
    for (head, no_decay), params in sorted(buckets.items()):
        groups.append(
            {
                "params": params,
                "lr": config.lr * (config.head_lr_scale if head else 1.0),
                "weight_decay": 0.0 if no_decay else config.weight_decay,
                "name": ("head" if head else "base") + ("_no_decay" if no_decay else ""),
            }
        )
    return groups


def build_optimizer(named: list[tuple[str, torch.Tensor]], config: OptimizerConfig) -> torch.optim.Optimizer:
    groups = param_groups(named, config)
    if not groups:
        raise UsageError("nothing to train: every parameter is frozen")
    cls = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    return cls(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, weight_decay=config.weight_decay)


def lr_factor(step: int, config: ScheduleConfig, *, total_steps: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier for optimiser step ``step`` (0-based).

    * ``constant``: 1.
    * ``step``: ``gamma ** #{milestones <= epoch}`` with milestones ``decay_start, +decay_every, ...``
      (0-based epoch; CAV-MAE ``MultiStepLR`` stepped once per epoch, spec §7.1).
    * ``cosine``: linear warmup from ``warmup_start_factor`` to 1, then a half cosine from 1 to the
      floor ``min_lr_ratio`` (or ``min_lr / lr``) at ``total_steps`` (Sync dev, spec §7.3).
    """
    if config.type == "constant":
        return 1.0
    if config.type == "step":
        epoch = step // max(steps_per_epoch, 1)
        if epoch < config.decay_start:
            return 1.0
        milestones = (epoch - config.decay_start) // config.decay_every + 1
        return config.gamma**milestones
    raise AssertionError(config.type)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, *, total_steps: int, steps_per_epoch: int, base_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimiser step."""
    if config.type == "cosine":
        warmup = config.warmup_steps
        if config.warmup_fraction is not None:
            warmup = int(config.warmup_fraction * total_steps)
        floor = config.min_lr_ratio if config.min_lr_ratio is not None else (config.min_lr / base_lr if base_lr else 0.0)

        def factor(step: int) -> float:
            if step < warmup:
                return config.warmup_start_factor + (1.0 - config.warmup_start_factor) * step / warmup
            span = max(total_steps - warmup, 1)
            progress = min((step - warmup) / span, 1.0)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    else:

        def factor(step: int) -> float:
            return lr_factor(step, config, total_steps=total_steps, steps_per_epoch=steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

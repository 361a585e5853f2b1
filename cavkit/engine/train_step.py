"""One training forward: the model and its weighted objectives as one module, autocast, DDP wrapping.

Model and objectives are one module (:class:`TrainStep`) so that DDP also averages the gradients
of objective parameters (a learnable temperature, spec §7).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import torch
from torch import nn

from cavkit.engine.dist import DistInfo
from cavkit.interfaces import ModelOutput


def objective_labels(nodes: list[Any]) -> list[str]:
    """Unique names for the recipe's objectives: ``name:`` if given, else ``type`` (``mae``, ``mae_2``)."""
    labels: list[str] = []
    for node in nodes:
        base = node.label or node.type
        label, n = base, 2
        while label in labels:
            label, n = f"{base}_{n}", n + 1
        labels.append(label)
    return labels


class TrainStep(nn.Module):
    """The model and its weighted objectives as one module.

    ``forward(batch, noise_audio, noise_visual) -> (total, losses [n_objectives], logs)`` where
    ``total = sum(weight_i * loss_i)`` and ``losses`` are the unweighted objective losses. With
    ``keep_output`` set, the model output of the last forward is kept in ``kept_output``.
    """

    def __init__(self, model: nn.Module, objectives: list[nn.Module], labels: list[str], weights: list[float]):
        super().__init__()
        self.model = model
        self.objectives = nn.ModuleList(objectives)
        self.labels = labels
        self.weights = weights
        self.keep_output = False
        self.kept_output: ModelOutput | None = None

    def forward(self, batch: dict[str, Any], noise_audio: torch.Tensor | None = None, noise_visual: torch.Tensor | None = None):
        output: ModelOutput = self.model(batch["audio"], batch["image"], noise_audio=noise_audio, noise_visual=noise_visual)
        losses, logs = [], {}
        total = None
        for label, weight, objective in zip(self.labels, self.weights, self.objectives):
            result = objective(batch, output)
            loss = result.loss.float()
            losses.append(loss)
            total = weight * loss if total is None else total + weight * loss
            for key, value in result.logs.items():
                if key != "loss":
                    logs[f"{label}/{key}"] = value.detach() if isinstance(value, torch.Tensor) else value
        # the model output stays out of the return value: DDP must only see tensors that feed the loss
        self.kept_output = output if self.keep_output else None
        return total, torch.stack(losses), logs


def build_train_step(recipe: Any, device: torch.device, *, report: bool, host: Any = None) -> TrainStep:
    """The recipe's model (initialised from ``trainer.init`` when set; head-only with ``freeze_base``)
    and its weighted objectives, on ``device``. ``report``: print what ``init`` loaded (rank 0);
    ``host``: the plugin host that resolves ``weights:NAME`` references."""
    from cavkit.engine.optim import freeze_all_but_head
    from cavkit.errors import UsageError

    if not recipe.objectives:
        raise UsageError("the recipe has no objectives; add at least one under objectives:")
    cfg = recipe.trainer
    model = recipe.model.build()
    if cfg.init:
        from cavkit.checkpoints.load import init_from_checkpoint

        loaded = init_from_checkpoint(model, cfg.init, host=host)
        if report:
            print(f"cavkit: initialised {len(loaded['loaded'])} tensors from {cfg.init}; "
                  f"fresh: {len(loaded['fresh'])}, ignored: {len(loaded['ignored'])}", file=sys.stderr)
    labels = objective_labels(recipe.objectives)
    objectives = [node.build() for node in recipe.objectives]
    weights = [float(n.weight) for n in recipe.objectives]
    train_step = TrainStep(model, objectives, labels, weights).to(device)
    if cfg.freeze_base:
        freeze_all_but_head(model, cfg.optimizer.head_prefixes)
    return train_step


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a collated batch to ``device`` (non-blocking on CUDA)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def scalar(value: Any, device: torch.device) -> torch.Tensor:
    """A logged value (tensor of any shape, or number) as a 0-d float tensor on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().mean().to(device)
    return torch.tensor(float(value), device=device)


def autocast(precision: str, device: torch.device):
    """The autocast context of ``trainer.precision`` (``fp32``: none)."""
    from cavkit.devices import autocast_dtype

    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def unused_parameters(train_step: TrainStep, batch: dict[str, Any], *, precision: str, device: torch.device) -> list[str]:
    """Trainable parameters that get no gradient from one local forward/backward (RNG untouched, grads cleared)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        with autocast(precision, device):
            total, _, _ = train_step(batch)
        total.backward()
    unused = [n for n, p in train_step.named_parameters() if p.requires_grad and p.grad is None]
    train_step.zero_grad(set_to_none=True)
    return unused


def wrap_ddp(train_step: TrainStep, batch: dict[str, Any], *, precision: str, dist: DistInfo) -> nn.Module:
    """``DistributedDataParallel(train_step)``, with ``find_unused_parameters`` only when one forward needs it."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    unused = unused_parameters(train_step, batch, precision=precision, device=dist.device)
    if unused and dist.is_rank_zero:
        shown = ", ".join(unused[:6]) + (" ..." if len(unused) > 6 else "")
        print(f"cavkit: note: {len(unused)} trainable parameter(s) get no gradient ({shown}); "
              "DDP runs with find_unused_parameters", file=sys.stderr)
    return DDP(train_step, device_ids=[dist.device] if dist.device.type == "cuda" else None,
               find_unused_parameters=bool(unused))

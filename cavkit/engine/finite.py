"""Non-finite losses and weights: stop before they spread, and name a checkpoint that is still good.

A NaN or infinite loss stops the run before the optimiser step (the weights stay those of the
previous step). Weights can also turn non-finite while the loss that produced them was finite (an
absurd learning rate): a checkpoint is therefore only written when every parameter is finite, so
the "last good checkpoint" in the message always holds finite weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cavkit.errors import CavkitError

ADVICE = ("Lower trainer.optimizer.lr, set trainer.clip_grad, or use bf16 instead of fp16, "
          "then resume with --resume latest (the new lr is applied on resume).")


class NonFiniteLossError(CavkitError):
    """A loss (or the weights) became NaN or infinite; the run stopped without saving bad weights."""


def non_finite_loss(labels: list[str], losses: torch.Tensor, *, step: int, epoch: int, last_checkpoint: str | None) -> NonFiniteLossError:
    """The error for non-finite objective ``losses [n_objectives]`` at 0-based ``step``/``epoch``."""
    bad = [f"{label} ({losses[i].item()})" for i, label in enumerate(labels) if not math.isfinite(losses[i].item())]
    what = ", ".join(bad) if bad else "the weighted total"
    keep = last_checkpoint or "none was written yet"
    return NonFiniteLossError(
        f"non-finite loss at step {step + 1} (epoch {epoch + 1}) from objective {what}; "
        f"the run stopped before updating the weights. Last good checkpoint: {keep}. {ADVICE}"
    )


def first_non_finite(model: nn.Module) -> str | None:
    """The name of the first parameter holding a NaN or infinity, or ``None`` (one device sync)."""
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0, 0])][0]


def check_finite_weights(model: nn.Module, step: int, last_checkpoint: str | None) -> None:
    """Raise :class:`NonFiniteLossError` when the weights after ``step`` optimiser steps are not finite."""
    bad = first_non_finite(model)
    if bad is not None:
        keep = last_checkpoint or "none was written yet"
        raise NonFiniteLossError(
            f"the weights became non-finite by step {step} ({bad}); they were not saved. "
            f"Last good checkpoint: {keep}. {ADVICE}"
        )

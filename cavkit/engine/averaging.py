"""Weight averaging over a range of epochs (``trainer.average_weights``; upstream fine-tuning's ``wa``).

At the end of each epoch ``e`` with ``start_epoch <= e <= end_epoch`` (1-based) the model's weights
are added to a running sum on rank 0; the average is ``sum / count`` for floating tensors, and
the latest value for integer buffers. The sum and count travel in training checkpoints, so a
resumed run averages the same epochs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WeightAverager:
    """Running sum of model weights over epochs ``start_epoch..end_epoch`` (1-based, inclusive).

    :param start_epoch: first epoch to include, or ``None`` for no averaging.
    :param end_epoch: last epoch to include.
    :param enabled: ``False`` on ranks other than 0 (they hold no sum).
    """

    def __init__(self, start_epoch: int | None, end_epoch: int | None, *, enabled: bool = True):
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.enabled = enabled and start_epoch is not None
        self.state: dict[str, Any] | None = None  # {"sum": state_dict, "count": int}

    @classmethod
    def from_config(cls, config: Any, *, enabled: bool) -> WeightAverager:
        """From ``trainer.average_weights`` (``None``: averaging off)."""
        if config is None:
            return cls(None, None, enabled=False)
        return cls(config.start_epoch, config.end_epoch, enabled=enabled)

    def add(self, model: nn.Module, epoch_1based: int) -> None:
        """Add the weights at the end of ``epoch_1based`` when it lies in the range."""
        if not self.enabled or not (self.start_epoch <= epoch_1based <= self.end_epoch):
            return
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if self.state is None:
            self.state = {"sum": weights, "count": 1}
            return
        for key, value in weights.items():
            if value.is_floating_point():
                self.state["sum"][key] += value
            else:
                self.state["sum"][key] = value
        self.state["count"] += 1

    @property
    def count(self) -> int:
        return self.state["count"] if self.state else 0

    def averaged(self) -> dict[str, torch.Tensor] | None:
        """The averaged state dict, or ``None`` before the first included epoch."""
        if not self.state:
            return None
        n = self.state["count"]
        return {k: (v / n if v.is_floating_point() else v) for k, v in self.state["sum"].items()}

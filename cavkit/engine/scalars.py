"""The logging window: training scalars averaged over the steps since the last log line (``trainer.log_every``)."""

from __future__ import annotations

import time

import torch

from cavkit.engine.dist import DistInfo, all_reduce_mean


class ScalarWindow:
    """Sums of per-step logs since the last :meth:`flush`; the gradient norm is kept as the latest value."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, logs: dict[str, torch.Tensor], samples: int) -> None:
        """Add one step's logs (0-d tensors; ``grad_norm`` only on steps that computed it)."""
        grad_norm = logs.pop("grad_norm", None)
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.count += 1
        self.samples += samples
        if grad_norm is not None:
            self.sums["grad_norm"] = grad_norm * self.count  # divided by count below: the latest value

    def flush(self, *, dist: DistInfo, lrs: dict[str, float], extra: dict[str, float]) -> dict[str, float]:
        """``train/<key>`` means over the window and ranks, the learning rates ``lrs`` (``train/lr/<group>``:
        the rates the last step used), throughput and ``extra``; then reset."""
        keys = sorted(self.sums)
        device = dist.device
        stacked = torch.stack([self.sums[k] / self.count for k in keys]) if keys else torch.zeros(0, device=device)
        stacked = all_reduce_mean(stacked, dist)
        values = {f"train/{k}": float(v) for k, v in zip(keys, stacked.tolist())}
        values.update(lrs)
        values["train/samples_per_s"] = self.samples / max(time.perf_counter() - self.start, 1e-9)
        values.update(extra)
        self.reset()
        return values

"""Gathering a tensor from every rank with the gradient path kept: the one helper for losses that
use negatives from the whole global batch (built-in ``infonce`` and plugin objectives alike).

Usage in an objective (``features [B, D]`` on this rank)::

    from cavkit.nn.distributed import gather_with_grad

    everyone, offset = gather_with_grad(features)   # [B_0 + B_1 + ..., D]; this rank's rows start at offset
    labels = torch.arange(features.shape[0]) + offset
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["gather_with_grad", "is_distributed"]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's ``x [B_r, ...]`` concatenated in rank order, and this rank's row offset.

    Ranks may hold different batch sizes (e.g. the last batch of an epoch): the sizes are exchanged
    first and each rank's rows are padded for the collective, then cut back, so no padding row
    reaches the result. Backward sums, for each rank's rows, the gradients every rank computed for
    them (``torch.distributed.nn.functional.all_gather``): with equal batches and gradients averaged
    by DDP, a loss on the gathered tensor trains exactly like the single-process loss over the
    global batch (open_clip's ``gather_with_grad``). Outside a multi-rank process group it returns
    ``(x, 0)``.

    :param x: this rank's tensor; every rank must pass the same trailing shape and dtype.
    :returns: ``(gathered [sum_r B_r, ...], offset)`` where ``gathered[offset : offset + B]`` is ``x``.
    """
    if not is_distributed():
        return x, 0
    from torch.distributed.nn.functional import all_gather

    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    x = x.contiguous()
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])])
    parts = all_gather(x)
    gathered = torch.cat([part[:n] for part, n in zip(parts, counts)], dim=0)
    return gathered, sum(counts[: dist.get_rank()])

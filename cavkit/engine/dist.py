"""Distributed helpers on plain ``torch.distributed``: torchrun's environment, rank-0 checks, reductions.

cavkit does not launch processes. Under ``torchrun`` the variables ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` are set; :func:`init_distributed` reads them, picks the backend (``nccl`` on CUDA,
``gloo`` on CPU) and the device. Without them the run is a single process and nothing is
initialised. The shape of this module follows Lightning Fabric's methods (``all_gather``,
``barrier``, ``is_global_zero``) so that another engine could replace it later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from cavkit.errors import UsageError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, its ``local_rank`` and ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0


def world_from_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` when absent)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise UsageError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun): {exc}") from None
    return rank, world, local


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group that torchrun describes (if any) and choose this process's device.

    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (one process only) or ``None`` (CUDA when available).
    :raises UsageError: an unusable device, or ``cuda:N`` under torchrun (each rank takes its local rank's GPU).
    """
    rank, world, local = world_from_env()
    from cavkit.devices import resolve_device

    chosen = resolve_device(device or "auto")  # the one auto/availability rule
    use_cuda = chosen.type == "cuda"
    if use_cuda and chosen.index is not None and world > 1:
        raise UsageError(f"--device {device}: under torchrun each process trains on the GPU of its LOCAL_RANK; "
                         "use --device cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)")
    if use_cuda:  # the device index is the one asked for, else this rank's local rank
        index = chosen.index if chosen.index is not None else local % max(torch.cuda.device_count(), 1)
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch_dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise UsageError("WORLD_SIZE > 1 but MASTER_ADDR is not set; launch with torchrun")
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def shutdown_distributed() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.is_distributed:
        torch_dist.barrier()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``values`` over ranks (returns a new tensor; identity on one process)."""
    if not info.is_distributed:
        return values
    out = values.detach().clone()
    torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
    return out / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is true on at least one rank (every rank gets the same answer)."""
    if not info.is_distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Send a picklable object from ``src`` to every rank."""
    if not info.is_distributed:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]

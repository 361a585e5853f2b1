"""cavkit.nn.distributed.gather_with_grad on two gloo processes with unequal batches: rows in rank
order without padding, the right offset, and gradients summed over ranks for each rank's rows."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cavkit.nn.distributed import gather_with_grad

SIZES = (3, 5)  # rows on rank 0 and rank 1
WEIGHTS = torch.arange(sum(SIZES) * 2, dtype=torch.float32).reshape(-1, 2)


def rows(rank: int) -> torch.Tensor:
    start = sum(SIZES[:rank])
    return torch.arange(start * 2, (start + SIZES[rank]) * 2, dtype=torch.float32).reshape(-1, 2) / 10


def worker(rank, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=len(SIZES))
    try:
        x = rows(rank).requires_grad_(True)
        gathered, offset = gather_with_grad(x)
        (gathered * WEIGHTS).sum().backward()
        results[rank] = (gathered.detach(), offset, x.grad)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, args=(port, results), nprocs=len(SIZES), join=True)
        return dict(results)


def test_unequal_batches_gather_in_rank_order_without_padding(two_ranks):
    whole = torch.cat([rows(0), rows(1)])
    for rank in range(len(SIZES)):
        gathered, offset, _ = two_ranks[rank]
        assert torch.equal(gathered, whole)
        assert offset == sum(SIZES[:rank])


def test_each_rank_gets_the_gradient_every_rank_computed_for_its_rows(two_ranks):
    for rank in range(len(SIZES)):
        start = sum(SIZES[:rank])
        expected = len(SIZES) * WEIGHTS[start : start + SIZES[rank]]
        assert torch.equal(two_ranks[rank][2], expected)


def test_outside_a_process_group_it_is_the_identity():
    x = rows(1)
    gathered, offset = gather_with_grad(x)
    assert gathered is x and offset == 0

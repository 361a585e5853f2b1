"""Gathered negatives on two gloo processes equal one process on the concatenated batch:
same loss (averaged over ranks, as DDP averages gradients) and the same gradients for the model
weights, the logit scale and the bias. Local negatives equal the loss of each half on its own."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cavkit.interfaces import ModelOutput

from cavkit_siglip.configs import SiglipConfig
from cavkit_siglip.objective import SigmoidContrastiveLoss

WORLD = 2
BATCH = 8  # global batch; each rank holds BATCH // WORLD


def make_problem():
    """Inputs, two tiny projections standing in for the encoders, and the objective."""
    torch.manual_seed(0)
    audio_in, visual_in = torch.randn(BATCH, 3, 6), torch.randn(BATCH, 3, 6)
    audio_proj, visual_proj = torch.nn.Linear(6, 5), torch.nn.Linear(6, 5)
    return audio_in, visual_in, audio_proj, visual_proj


def step(negatives, rows):
    """Loss and gradients (weights, t', b) for the batch rows ``rows``."""
    audio_in, visual_in, audio_proj, visual_proj = make_problem()
    objective = SigmoidContrastiveLoss(SiglipConfig(negatives=negatives, scale_init=3.0, bias_init=-2.0))
    out = ModelOutput(audio_tokens=audio_proj(audio_in[rows]), visual_tokens=visual_proj(visual_in[rows]))
    loss = objective({}, out).loss
    loss.backward()
    grads = [p.grad for p in (*audio_proj.parameters(), *visual_proj.parameters(), *objective.parameters())]
    return loss.detach(), grads


def worker(rank, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for negatives in ("global", "local"):
            loss, grads = step(negatives, half)
            for g in grads:  # what DDP does to the gradients
                dist.all_reduce(g)
                g /= WORLD
            results[(rank, negatives)] = (loss, grads)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, args=(free_port(), results), nprocs=WORLD, join=True)
        return dict(results)


def test_gathered_negatives_equal_one_process_on_the_whole_batch(two_ranks):
    whole_loss, whole_grads = step("local", slice(None))
    mean_loss = sum(two_ranks[(r, "global")][0] for r in range(WORLD)) / WORLD
    torch.testing.assert_close(mean_loss, whole_loss)
    for rank in range(WORLD):
        for got, want in zip(two_ranks[(rank, "global")][1], whole_grads):
            torch.testing.assert_close(got, want)


def test_local_negatives_use_only_the_own_half(two_ranks):
    for rank in range(WORLD):
        half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        own_loss, _ = step("local", half)
        torch.testing.assert_close(two_ranks[(rank, "local")][0], own_loss)
    whole_loss, _ = step("local", slice(None))
    assert not torch.allclose(two_ranks[(0, "local")][0], two_ranks[(0, "global")][0])
    assert not torch.allclose(whole_loss, sum(two_ranks[(r, "local")][0] for r in range(WORLD)) / WORLD)


def test_gathered_negatives_outside_distributed_are_local():
    assert torch.equal(step("global", slice(None))[0], step("local", slice(None))[0])

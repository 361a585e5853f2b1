"""DataParallel semantics with the shipped contrastive objectives, 2 gloo processes on CPU (spec §7.1, §10 item 2).

The gradients the optimiser receives in a real 2-process DDP step of :class:`cavkit.engine.trainer.Trainer`
are compared with gradients computed by hand in one process from the same weights, clips and masking
noise (global batch 8 = 2 shards of 4):

* CAV-MAE (``infonce``, ``negatives: local``, ``sum_device_losses: true``): the gradient of the SUM of
  the two shard losses, each scoring only its own shard's negatives (published ``nn.DataParallel``
  followed by ``loss.sum()``);
* ``negatives: global``: the gradient of the loss of one process on the whole batch;
* CAV-MAE Sync (``sync_contrastive``, ``negatives: local``, losses averaged): the gradient of the MEAN of
  the shard losses (the Sync dev loop's ``.mean()`` over replicas).

Parameters no loss reaches (e.g. the per-modality norms of the modality-specific blocks) get no
gradient in either case, so Adam leaves them untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ddp_helpers as h
import pytest
import torch
import yaml

HERE = Path(__file__).resolve().parent
SHARD = 4

CASES = {
    # name: (objective, negatives, sum_device_losses, how the reference combines the shard losses)
    "cav_mae_local_sum": ("infonce", "local", True, "sum"),
    "cav_mae_global": ("infonce", "global", False, "whole"),
    "sync_local_mean": ("sync_contrastive", "local", False, "mean"),
    "sync_global": ("sync_contrastive", "global", False, "whole"),
}


def _shard(batch: dict, r: int) -> dict:
    return {k: v[r * SHARD:(r + 1) * SHARD] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def reference_grads(objective: str, negatives: str, combine: str, tmp: Path) -> dict[str, torch.Tensor | None]:
    """One process, same recipe seed: the first global batch of 8 and its noise, losses combined by hand."""
    from cavkit.engine.data import train_loader

    data = h.recipe(objective, negatives=negatives, sum_device_losses=False, batch_size=2 * SHARD)
    t = h.trainer(data, tmp / f"ref-{objective}-{combine}.yaml", tmp / f"ref-{objective}-{combine}")
    batch = next(iter(train_loader(t.train_set, plan=t.plan, epoch=0, start_step=0, rank=0, world_size=1,
                                   batch_size=2 * SHARD, grad_accum=1, num_workers=0, pin_memory=False)))
    t.noise.probe(t.model, batch, t.device)
    na, nv = t.noise.step_noise(0)
    t.train_step.train()
    if combine == "whole":
        total = t.train_step(batch, na, nv)[0]
    else:
        parts = [t.train_step(_shard(batch, r), na[r * SHARD:(r + 1) * SHARD], nv[r * SHARD:(r + 1) * SHARD])[0]
                 for r in range(2)]
        total = parts[0] + parts[1] if combine == "sum" else (parts[0] + parts[1]) / 2
    total.backward()
    return {n: None if p.grad is None else p.grad.detach().clone()
            for n, p in t.train_step.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def ddp_grads(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    items = []
    for name, (objective, negatives, summed, _) in CASES.items():
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(h.recipe(objective, negatives=negatives, sum_device_losses=summed, batch_size=SHARD)))
        items.append(f"{name}={path}")
    env = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "ddp_grads_script.py"), str(tmp), *items]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {name: torch.load(tmp / f"{name}.pt") for name in CASES} | {"_tmp": tmp}


def _assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    no_grad = sorted(n for n, g in want.items() if g is None)
    assert no_grad, "the tiny models have parameters no loss reaches (unused per-modality norms)"
    assert sorted(n for n, g in got.items() if g is None) == no_grad
    for name, g in want.items():
        if g is not None:
            torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("name", list(CASES))
def test_ddp_gradient_is_the_published_combination_of_shard_losses(ddp_grads, name):
    objective, negatives, _, combine = CASES[name]
    want = reference_grads(objective, negatives, combine, ddp_grads["_tmp"])
    _assert_same_grads(ddp_grads[name], want)


def test_the_three_combinations_really_differ(ddp_grads):
    """Sum vs mean is a factor 2; local vs global negatives change the contrastive gradient."""
    tmp = ddp_grads["_tmp"]
    summed = ddp_grads["cav_mae_local_sum"]
    mean = reference_grads("infonce", "local", "mean", tmp)
    whole = reference_grads("infonce", "global", "whole", tmp)
    key = next(n for n, g in summed.items() if g is not None and "encoder.blocks_a" in n)
    torch.testing.assert_close(summed[key], 2 * mean[key], rtol=1e-4, atol=1e-7)
    assert not torch.allclose(summed[key], mean[key], rtol=1e-3)
    assert not torch.allclose(mean[key], whole[key], rtol=1e-3, atol=1e-7)

"""Objectives: the published InfoNCE formula, options, and global negatives across 2 gloo ranks."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput
from cavkit.objectives.classification import ClassificationLoss
from cavkit.objectives.infonce import InfoNCE, SyncContrastive
from cavkit.objectives.mae import MAELoss, masked_mse


def _upstream_nce(a, v, bidirect=False):
    """The published formula, written as upstream does (log_softmax over dim 0 of a·vᵀ/0.05)."""
    a, v = F.normalize(a, dim=-1), F.normalize(v, dim=-1)
    total = a @ v.T / 0.05
    nce = -torch.mean(torch.diag(F.log_softmax(total, dim=0)))
    acc = (total.softmax(0).argmax(0) == torch.arange(a.shape[0])).float().mean()
    if bidirect:
        nce = (nce - torch.mean(torch.diag(F.log_softmax(total.T, dim=0)))) / 2
        acc = (acc + (total.T.softmax(0).argmax(0) == torch.arange(a.shape[0])).float().mean()) / 2
    return nce, acc


def _output(a, v, ga=None, gv=None):
    return ModelOutput(audio_tokens=a, visual_tokens=v, audio_global=ga, visual_global=gv)


def test_infonce_matches_the_published_formula():
    torch.manual_seed(0)
    a, v = torch.randn(6, 5, 8), torch.randn(6, 3, 8)
    for direction, bidirect in (("visual_to_audio", False), ("both", True)):
        out = InfoNCE(direction=direction)({}, _output(a, v))
        nce, acc = _upstream_nce(a.mean(1), v.mean(1), bidirect)
        assert out.loss.item() == pytest.approx(nce.item(), abs=1e-6)
        assert out.logs["c_acc"].item() == pytest.approx(acc.item())


def test_audio_to_visual_is_the_transpose():
    torch.manual_seed(1)
    a, v = torch.randn(5, 8), torch.randn(5, 8)
    a2v = InfoNCE(direction="audio_to_visual")({}, _output(a[:, None], v[:, None])).loss
    v2a_swapped = InfoNCE(direction="visual_to_audio")({}, _output(v[:, None], a[:, None])).loss
    assert a2v.item() == pytest.approx(v2a_swapped.item(), abs=1e-6)


def test_learnable_temperature_is_trained():
    objective = InfoNCE(learnable_temperature=True, temperature=0.07)
    a, v = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    out = objective({}, _output(a, v))
    out.loss.backward()
    (param,) = list(objective.parameters())
    assert param.grad is not None and param.grad.abs() > 0
    assert out.logs["temperature"].item() == pytest.approx(0.07, rel=1e-5)
    assert list(InfoNCE().parameters()) == []


def test_sync_contrastive_global_and_global_local():
    torch.manual_seed(2)
    a, v, ga, gv = torch.randn(4, 3, 8), torch.randn(4, 2, 8), torch.randn(4, 8), torch.randn(4, 8)
    glob = SyncContrastive()({}, _output(a, v, ga, gv))
    assert glob.loss.item() == pytest.approx(_upstream_nce(ga, gv)[0].item(), abs=1e-6)
    both = SyncContrastive(global_local=True)({}, _output(a, v, ga, gv))
    local = _upstream_nce(a.mean(1), v.mean(1))[0]
    assert both.loss.item() == pytest.approx((glob.loss.item() + local.item()) / 2, abs=1e-6)
    with pytest.raises(UsageError, match="global tokens"):
        SyncContrastive()({}, _output(a, v))


def test_mae_loss_norm_pix_uses_unbiased_variance_and_removed_patches_only():
    torch.manual_seed(3)
    pred, target = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 1]])
    t = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=True, keepdim=True) + 1e-6).sqrt()
    per_patch = ((pred - t) ** 2).mean(-1)
    expected = (per_patch * mask).sum() / mask.sum()
    assert masked_mse(pred, target, mask, True).item() == pytest.approx(expected.item(), abs=1e-6)
    plain = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    assert masked_mse(pred, target, mask, False).item() == pytest.approx(plain.item(), abs=1e-6)
    with pytest.raises(UsageError, match="decoder"):
        MAELoss()({}, ModelOutput())


def test_classification_losses():
    logits = torch.randn(3, 5, requires_grad=True)
    label = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]])
    bce = ClassificationLoss("bce")({"label": label}, ModelOutput(logits=logits)).loss
    assert bce.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, label).item())
    soft = label / label.sum(1, keepdim=True)
    ce = ClassificationLoss("ce")({"label": soft}, ModelOutput(logits=logits)).loss
    assert ce.item() == pytest.approx(-(soft * logits.log_softmax(1)).sum(1).mean().item(), abs=1e-6)


# -- global negatives: 2 processes (gloo) against one process over the whole batch ---------------------
def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    a_full, v_full = torch.randn(8, 16), torch.randn(8, 16)
    part = slice(rank * 4, rank * 4 + 4)
    a = a_full[part].clone().requires_grad_(True)
    v = v_full[part].clone().requires_grad_(True)
    objective = InfoNCE(direction="both", negatives="global")
    out = objective({}, ModelOutput(audio_tokens=a[:, None], visual_tokens=v[:, None]))
    out.loss.backward()
    local = InfoNCE(direction="both", negatives="local")(
        {}, ModelOutput(audio_tokens=a[:, None].detach(), visual_tokens=v[:, None].detach())
    )
    torch.save(
        {"loss": out.loss.detach(), "local": local.loss, "grad_a": a.grad, "grad_v": v.grad},
        os.path.join(out_dir, f"{rank}.pt"),
    )
    dist.destroy_process_group()


def test_global_negatives_equal_the_whole_batch_across_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_rank_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    a_full = torch.randn(8, 16).requires_grad_(True)
    v_full = torch.randn(8, 16).requires_grad_(True)
    full = InfoNCE(direction="both")({}, ModelOutput(audio_tokens=a_full[:, None], visual_tokens=v_full[:, None]))
    full.loss.backward()
    mean_loss = (ranks[0]["loss"] + ranks[1]["loss"]) / 2
    assert mean_loss.item() == pytest.approx(full.loss.item(), abs=1e-5)
    # DDP averages gradients over ranks, so each rank's local gradient is world_size x the full-batch one
    grad_a = torch.cat([r["grad_a"] for r in ranks]) / 2
    grad_v = torch.cat([r["grad_v"] for r in ranks]) / 2
    assert torch.allclose(grad_a, a_full.grad, atol=1e-6)
    assert torch.allclose(grad_v, v_full.grad, atol=1e-6)
    # local negatives (the published DataParallel behaviour) are a different, per-shard loss
    assert abs(ranks[0]["local"].item() - ranks[0]["loss"].item()) > 1e-3


def test_global_negatives_fall_back_to_local_without_distributed():
    a, v = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    g = InfoNCE(negatives="global")({}, _output(a, v)).loss
    loc = InfoNCE(negatives="local")({}, _output(a, v)).loss
    assert g.item() == loc.item()

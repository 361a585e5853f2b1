"""Learning-rate schedules, parameter groups and freezing (spec §7.1, §7.3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cavkit.engine.optim import build_optimizer, build_scheduler, freeze_all_but_head, lr_factor, param_groups
from cavkit.errors import UsageError
from cavkit.recipe.schema import OptimizerConfig, ScheduleConfig


def lrs(config: ScheduleConfig, total: int, per_epoch: int, base: float = 1.0) -> list[float]:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = build_scheduler(opt, config, total_steps=total, steps_per_epoch=per_epoch, base_lr=base)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_matches_cavmae_multisteplr_per_epoch() -> None:
    # CAV-MAE pretraining: milestones 10, 15, 20 (start 10, every 5), gamma 0.5, stepped per epoch
    config = ScheduleConfig(type="step", decay_start=10, decay_every=5, gamma=0.5)
    per_epoch = 3
    got = lrs(config, 25 * per_epoch, per_epoch)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(10, 1000, 5)), gamma=0.5)
    for epoch in range(25):
        assert got[epoch * per_epoch : (epoch + 1) * per_epoch] == [opt.param_groups[0]["lr"]] * per_epoch
        opt.step()
        ref.step()
    assert got[9 * per_epoch] == 1.0 and got[10 * per_epoch] == 0.5 and got[15 * per_epoch] == 0.25


def test_cosine_schedule_warmup_fraction_and_floor() -> None:
    config = ScheduleConfig(type="cosine", warmup_fraction=0.1, warmup_start_factor=0.0, min_lr_ratio=0.1)
    got = lrs(config, 100, 10, base=2e-4)
    assert got[0] == 0.0 and got[5] == pytest.approx(1e-4) and got[10] == pytest.approx(2e-4)
    assert all(a >= b for a, b in zip(got[10:], got[11:]))  # decreasing after warmup
    assert got[-1] == pytest.approx(2e-5 + 1.8e-4 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor(7, ScheduleConfig(type="constant"), total_steps=10, steps_per_epoch=2) == 1.0


def test_param_groups_head_scale_and_no_decay() -> None:
    model = nn.Sequential()
    model.add_module("body", nn.Linear(4, 4))
    model.add_module("norm", nn.LayerNorm(4))
    model.add_module("head", nn.Linear(4, 2))
    config = OptimizerConfig(lr=1e-3, head_lr_scale=100, head_prefixes=["head."], weight_decay=0.1, no_decay_norm_bias=True)
    groups = {g["name"]: g for g in param_groups(list(model.named_parameters()), config)}
    assert groups["head"]["lr"] == pytest.approx(0.1) and groups["head"]["weight_decay"] == 0.1
    assert groups["head_no_decay"]["params"] == [model.head.bias]
    assert groups["base"]["params"] == [model.body.weight]
    assert {id(p) for p in groups["base_no_decay"]["params"]} == {id(model.body.bias), id(model.norm.weight), id(model.norm.bias)}
    opt = build_optimizer(list(model.named_parameters()), OptimizerConfig(name="adamw"))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.95, 0.999)


def test_freeze_all_but_head() -> None:
    model = nn.Sequential()
    model.add_module("body", nn.Linear(4, 4))
    model.add_module("head", nn.Linear(4, 2))
    assert freeze_all_but_head(model, ["head."]) == 10
    assert not model.body.weight.requires_grad and model.head.weight.requires_grad
    with pytest.raises(UsageError, match="head_prefixes"):
        freeze_all_but_head(model, ["mlp_head."])

"""The SigLIP objective: loss value against a pair-by-pair reference, gradients to t' and b,
feature selection for CAV-MAE and Sync outputs, and that training with it separates pairs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput

from cavkit_siglip.configs import SiglipConfig
from cavkit_siglip.objective import SigmoidContrastiveLoss, sigmoid_pairwise_loss


def reference_loss(audio, visual, scale, bias):
    """Zhai et al. 2023, Algorithm 1, written out one pair at a time in float64."""
    a = F.normalize(audio.double(), dim=-1).tolist()
    v = F.normalize(visual.double(), dim=-1).tolist()
    total = 0.0
    for i, ai in enumerate(a):
        for j, vj in enumerate(v):
            logit = scale * sum(x * y for x, y in zip(ai, vj)) + bias
            label = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-label * logit))  # -log sigmoid(label * logit)
    return total / len(a)


def cav_mae_output(batch=6, tokens=5, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ModelOutput(
        audio_tokens=torch.randn(batch, tokens, dim, generator=g, requires_grad=True),
        visual_tokens=torch.randn(batch, tokens + 2, dim, generator=g, requires_grad=True),
    )


@pytest.mark.parametrize("scale, bias", [(10.0, -10.0), (3.0, 0.5), (1.0, -2.0)])
def test_loss_matches_pairwise_reference(scale, bias):
    out = cav_mae_output()
    objective = SigmoidContrastiveLoss(SiglipConfig(scale_init=scale, bias_init=bias, features="pooled"))
    got = objective({}, out).loss
    want = reference_loss(out.audio_tokens.mean(1), out.visual_tokens.mean(1), scale, bias)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_initial_parameters_follow_the_paper():
    objective = SigmoidContrastiveLoss(SiglipConfig())
    assert objective.log_scale.item() == pytest.approx(math.log(10.0))
    assert objective.bias.item() == pytest.approx(-10.0)
    assert {name for name, _ in objective.named_parameters()} == {"log_scale", "bias"}


def test_gradients_reach_scale_and_bias_with_the_analytic_values():
    out = cav_mae_output(seed=1)
    objective = SigmoidContrastiveLoss(SiglipConfig(scale_init=2.0, bias_init=-1.0))
    result = objective({}, out)
    result.loss.backward()
    # d/dl of -log sigmoid(z l) is -z (1 - sigmoid(z l)); l = exp(t') cos + b.
    a = F.normalize(out.audio_tokens.detach().mean(1), dim=-1)
    v = F.normalize(out.visual_tokens.detach().mean(1), dim=-1)
    cos = a @ v.T
    z = 2 * torch.eye(len(a)) - 1
    dl = -z * (1 - torch.sigmoid(z * (2.0 * cos - 1.0))) / len(a)
    assert objective.bias.grad.item() == pytest.approx(dl.sum().item(), rel=1e-5)
    assert objective.log_scale.grad.item() == pytest.approx((dl * 2.0 * cos).sum().item(), rel=1e-5)
    assert out.audio_tokens.grad.abs().sum() > 0 and out.visual_tokens.grad.abs().sum() > 0


def test_fixed_scale_and_bias_are_buffers():
    objective = SigmoidContrastiveLoss(SiglipConfig(learnable=False))
    assert list(objective.parameters()) == []
    assert set(objective.state_dict()) == {"log_scale", "bias"}


def test_auto_features_use_sync_global_tokens():
    g = torch.Generator().manual_seed(2)
    sync = ModelOutput(
        audio_tokens=torch.randn(4, 3, 8, generator=g),
        visual_tokens=torch.randn(4, 3, 8, generator=g),
        audio_global=torch.randn(4, 8, generator=g),
        visual_global=torch.randn(4, 8, generator=g),
    )
    auto = SigmoidContrastiveLoss(SiglipConfig())({}, sync).loss
    assert auto.item() == pytest.approx(reference_loss(sync.audio_global, sync.visual_global, 10.0, -10.0), rel=1e-5)
    pooled = SigmoidContrastiveLoss(SiglipConfig(features="pooled"))({}, sync).loss
    assert pooled.item() == pytest.approx(
        reference_loss(sync.audio_tokens.mean(1), sync.visual_tokens.mean(1), 10.0, -10.0), rel=1e-5
    )


def test_global_features_on_a_model_without_global_tokens_is_a_clear_error():
    with pytest.raises(UsageError, match="features 'global' needs a model with global tokens"):
        SigmoidContrastiveLoss(SiglipConfig(features="global"))({}, cav_mae_output())


def test_logs_report_scale_bias_and_accuracy():
    a = torch.eye(4, 8)
    out = ModelOutput(audio_global=a, visual_global=a.clone())
    logs = SigmoidContrastiveLoss(SiglipConfig())({}, out).logs
    assert logs["scale"].item() == pytest.approx(10.0)
    assert logs["bias"].item() == pytest.approx(-10.0)
    assert logs["c_acc"].item() == 1.0
    assert logs["pos_prob"].item() == pytest.approx(0.5)  # 10 * 1 - 10 = 0


def test_offset_pairs_rows_with_a_slice_of_the_columns():
    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    v = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    t, b = torch.tensor(math.log(5.0)), torch.tensor(-3.0)
    full, _ = sigmoid_pairwise_loss(a, v, t, b)
    top, _ = sigmoid_pairwise_loss(a[:3], v, t, b, offset=0)
    bottom, _ = sigmoid_pairwise_loss(a[3:], v, t, b, offset=3)
    assert ((top + bottom) / 2).item() == pytest.approx(full.item(), rel=1e-6)


def test_a_few_steps_of_training_separate_positive_pairs():
    torch.manual_seed(0)
    audio_in, visual_in = torch.randn(16, 12), torch.randn(16, 12)
    audio_proj, visual_proj = torch.nn.Linear(12, 8), torch.nn.Linear(12, 8)
    objective = SigmoidContrastiveLoss(SiglipConfig())
    params = [*audio_proj.parameters(), *visual_proj.parameters(), *objective.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.05)
    losses = []
    for _ in range(60):
        out = ModelOutput(audio_global=audio_proj(audio_in), visual_global=visual_proj(visual_in))
        result = objective({}, out)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(result.loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert result.logs["c_acc"].item() == 1.0
    assert objective.bias.item() != pytest.approx(-10.0)

"""The sigmoid pairwise contrastive objective (SigLIP) for CAV-MAE and CAV-MAE Sync.

Zhai et al., "Sigmoid Loss for Language Image Pre-Training" (ICCV 2023), Algorithm 1, with audio in
place of images and video frames in place of text. Every (audio i, visual j) pair is its own binary
classification, positive only on the diagonal::

    logits = t * a @ v.T + b,   t = exp(t'),   z_ij = +1 if j is i's partner else -1
    loss   = -(1/B) * sum_ij log sigmoid(z_ij * logits_ij)

with learnable t' (initialised to log 10) and b (initialised to -10). Unlike InfoNCE there is no
softmax over the batch, hence no direction: both modalities are treated alike.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput, ObjectiveOutput
from cavkit.nn.distributed import gather_with_grad

from cavkit_siglip.configs import SiglipConfig


def sigmoid_pairwise_loss(
    audio: torch.Tensor, visual: torch.Tensor, log_scale: torch.Tensor, bias: torch.Tensor, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """SigLIP loss of ``B`` audio rows against ``M >= B`` visual columns.

    :param audio: L2-normalised ``[B,D]``.
    :param visual: L2-normalised ``[M,D]``; audio row ``i`` is paired with visual row ``offset + i``
        (``offset`` locates this process's batch inside visual embeddings gathered from every rank).
    :param log_scale: scalar ``t'``; the logit scale is ``exp(t')``.
    :param bias: scalar ``b``.
    :returns: ``(loss, logits [B,M])``; the loss is summed over columns and averaged over rows.
    """
    logits = log_scale.exp() * audio @ visual.T + bias
    rows = torch.arange(audio.shape[0], device=audio.device)
    labels = torch.full_like(logits, -1.0)
    labels[rows, rows + offset] = 1.0
    loss = -F.logsigmoid(labels * logits).sum() / audio.shape[0]
    return loss, logits


def select_features(output: ModelOutput, features: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ``[B,D]`` vectors the loss compares: Sync global tokens or pooled patch tokens."""
    if features == "auto":
        features = "global" if output.audio_global is not None and output.visual_global is not None else "pooled"
    if features == "global":
        if output.audio_global is None or output.visual_global is None:
            raise UsageError(
                "objective siglip: features 'global' needs a model with global tokens (cav_mae_sync); "
                "this model produced none; use features: pooled (or auto)"
            )
        return output.audio_global, output.visual_global
    if output.audio_tokens is None or output.visual_tokens is None:
        raise UsageError(
            "objective siglip: the model returned no contrastive patch tokens (audio_tokens/visual_tokens) "
            "to pool; use it with cav_mae or cav_mae_sync"
        )
    return output.audio_tokens.mean(dim=1), output.visual_tokens.mean(dim=1)


class SigmoidContrastiveLoss(nn.Module):
    """``objective(batch, output) -> ObjectiveOutput``: the SigLIP loss on audio/visual embeddings.

    Holds ``log_scale`` (t') and ``bias`` (b); as parameters they are trained with the model
    (``learnable: true``), otherwise they are fixed buffers.
    """

    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.features = config.features
        self.negatives = config.negatives
        log_scale = torch.tensor(config.log_scale_init, dtype=torch.float32)
        bias = torch.tensor(config.bias_init, dtype=torch.float32)
        if config.learnable:
            self.log_scale = nn.Parameter(log_scale)
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("log_scale", log_scale)
            self.register_buffer("bias", bias)

    def forward(self, batch: dict[str, Any], output: ModelOutput) -> ObjectiveOutput:
        audio, visual = select_features(output, self.features)
        # The logits reach |t| + |b| ~ 20 at initialisation: keep them in fp32 under autocast.
        audio = F.normalize(audio.float(), dim=-1)
        visual = F.normalize(visual.float(), dim=-1)
        offset = 0
        if self.negatives == "global":
            visual, offset = gather_with_grad(visual)
        loss, logits = sigmoid_pairwise_loss(audio, visual, self.log_scale, self.bias, offset)
        with torch.no_grad():
            rows = torch.arange(audio.shape[0], device=audio.device)
            logs = {
                "loss": loss.detach(),
                "scale": self.log_scale.exp().detach(),
                "bias": self.bias.detach().clone(),
                "c_acc": (logits.argmax(dim=1) == rows + offset).float().mean(),
                "pos_prob": torch.sigmoid(logits[rows, rows + offset]).mean(),
            }
        return ObjectiveOutput(loss=loss, logs=logs)


def build_siglip(config: SiglipConfig) -> SigmoidContrastiveLoss:
    """Factory registered as objective ``siglip``."""
    return SigmoidContrastiveLoss(config)

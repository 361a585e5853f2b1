"""Masked-reconstruction objective ``mae`` (spec §2.4)."""

from __future__ import annotations

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput, ObjectiveOutput


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    """Mean over removed patches of the per-patch MSE. ``pred``/``target`` ``[B, L, P]``, ``mask`` ``[B, L]``.

    With ``norm_pix_loss`` each target patch is standardised with its mean and *unbiased* variance
    (eps 1e-6), as upstream.
    """
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


class MAELoss(nn.Module):
    """``loss = L_audio + L_visual``; logs both terms."""

    def __init__(self, norm_pix_loss: bool = True):
        super().__init__()
        self.norm_pix_loss = norm_pix_loss

    def forward(self, batch: dict, output: ModelOutput) -> ObjectiveOutput:
        if output.pred_audio is None or output.pred_visual is None:
            raise UsageError("the mae objective needs a model with a decoder (pred_audio / pred_visual are missing)")
        la = masked_mse(
            output.pred_audio.float(), output.target_audio.float(), output.mask_audio.float(), self.norm_pix_loss
        )
        lv = masked_mse(
            output.pred_visual.float(), output.target_visual.float(), output.mask_visual.float(), self.norm_pix_loss
        )
        return ObjectiveOutput(loss=la + lv, logs={"mae_audio": la.detach(), "mae_visual": lv.detach()})


def build_mae(config) -> MAELoss:
    return MAELoss(norm_pix_loss=config.norm_pix_loss)

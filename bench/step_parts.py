"""The pieces the step benches share: the full-size (or tiny) models, a batch and the pretraining loss.

``bench/model_step.py`` (CPU, SDPA vs eager attention) and ``bench/gpu.py`` (the accelerator table)
time the same step: forward, MAE loss + 0.01 x contrastive loss (spec §6.1, the published weights),
backward. Both build it from here so that their numbers describe one and the same computation.
"""

from __future__ import annotations

import torch

MODELS = ("cav_mae", "cav_mae_sync")

#: a tiny configuration for checking a bench script itself (``--tiny``); its timings mean nothing
TINY = {
    "embed_dim": 64,
    "audio_length": 96,
    "image_size": 64,
    "encoder": {"depth": 2, "num_heads": 4},
    "decoder": {"embed_dim": 64, "depth": 1, "num_heads": 4},
}

#: weight of the contrastive term next to the MAE term (the published pretraining recipes)
CONTRAST_WEIGHT = 0.01


def build_model(name: str, attn_impl: str, device: torch.device | str, tiny: bool = False) -> torch.nn.Module:
    """The registered model ``name`` at full size (or :data:`TINY`), seeded identically, in train mode.

    ``attn_impl`` is ``"sdpa"`` (cavkit's default) or ``"eager"`` (the published softmax(q·kᵀ)·v).
    """
    from cavkit.checkpoints.build import build_model_node
    from cavkit.nn.blocks import set_attn_impl

    torch.manual_seed(0)
    model = build_model_node({"type": name, **(TINY if tiny else {})}).build().to(device)
    set_attn_impl(model, attn_impl)
    return model.train()


def make_batch(model: torch.nn.Module, batch: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random fbank ``[B, T, 128]`` and images ``[B, 3, H, W]`` of the model's input size (fixed seed)."""
    g = torch.Generator().manual_seed(0)
    t = model.audio_tokenizer.audio_length
    h = model.visual_tokenizer.image_size
    return torch.randn(batch, t, 128, generator=g).to(device), torch.randn(batch, 3, h, h, generator=g).to(device)


class PretrainLoss:
    """``MAE(norm_pix) + 0.01 x contrastive`` of a model output; Sync's contrastive term for Sync."""

    def __init__(self, name: str):
        from cavkit.objectives.infonce import InfoNCE, SyncContrastive
        from cavkit.objectives.mae import MAELoss

        self.mae = MAELoss(norm_pix_loss=True)
        self.contrast = SyncContrastive() if name == "cav_mae_sync" else InfoNCE()

    def __call__(self, out) -> torch.Tensor:
        return self.mae({}, out).loss + CONTRAST_WEIGHT * self.contrast({}, out).loss


def count_flops(step, *inputs) -> int:
    """FLOPs of one call ``step(*inputs)`` (matmuls and attention), as ``torch.utils.flop_counter`` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(*inputs)
    return counter.get_total_flops()

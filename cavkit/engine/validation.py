"""Per-epoch validation losses on ``data.val`` (``trainer.eval_every_epochs``).

Each objective's loss is averaged over sequential batches of the validation set (``drop_last``
like upstream, spec §10 item 12) and then over ranks. With ``masking_noise: global`` the masks of
validation batch ``i`` come from ``(seed, i)``, so the same weights always give the same losses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavkit.engine.data import eval_loader
from cavkit.engine.dist import DistInfo, all_reduce_mean
from cavkit.engine.noise import MaskingNoise
from cavkit.engine.train_step import TrainStep, autocast, to_device


@torch.no_grad()
def validation_losses(
    train_step: TrainStep, module: nn.Module, val_set: Any, cfg: Any, *, seed: int, noise: MaskingNoise, dist: DistInfo
) -> dict[str, float]:
    """``{"val/loss": weighted total, "val/loss/<objective>": ...}`` averaged over batches and ranks.

    :param module: what the trainer runs (``train_step`` or its DDP wrapper); put in eval mode meanwhile.
    :param cfg: the recipe's ``trainer`` section (batch sizes, workers, precision, masking noise).
    :param seed: the recipe's seed (per-item augmentation seeds of the validation set).
    """
    batch_size = cfg.eval_batch_size or cfg.batch_size
    loader = eval_loader(val_set, batch_size=batch_size, rank=dist.rank, world_size=dist.world_size,
                         seed=seed, num_workers=cfg.num_workers, drop_last=True)
    device = dist.device
    module.eval()
    sums = torch.zeros(len(train_step.labels) + 1, device=device)
    count = 0
    for i, batch in enumerate(loader):
        batch = to_device(batch, device)
        pair = None
        if cfg.masking_noise == "global":
            pair = noise.eval_noise(i, batch["audio"].shape[0], rank=dist.rank, world_size=dist.world_size, device=device)
        na, nv = pair if pair is not None else (None, None)
        with autocast(cfg.precision, device):
            total, losses, _ = train_step(batch, na, nv)
        sums += torch.cat([total.detach().reshape(1), losses.detach()])
        count += 1
    sums = all_reduce_mean(sums / max(count, 1), dist)
    module.train()
    out = {"val/loss": float(sums[0])}
    out.update({f"val/loss/{label}": float(sums[i + 1]) for i, label in enumerate(train_step.labels)})
    return out

"""The masking-noise plan: which random numbers decide the masked tokens of every step.

Random masking (spec §3, CAV-MAE §2.3) keeps the tokens with the lowest noise values. With
``trainer.masking_noise: global`` the trainer draws the noise of a whole global batch from
``(seed, step)`` and hands each (micro-batch, rank) its rows, so the masks do not depend on the
device count or ``grad_accum`` and a resumed run draws exactly what an uninterrupted one would.
With ``device`` the model draws its own noise from each process's torch RNG.

:class:`MaskingNoise` is the public seam for replaying another run: a subclass (or any object
with the same methods) whose :meth:`~MaskingNoise.step_noise` returns recorded noise can be set
as ``Trainer.noise`` before :meth:`~cavkit.engine.trainer.Trainer.fit`. Shapes:

* ``step_noise(step) -> (audio [G, La], visual [G, Lv])`` with ``G`` the global batch and
  ``La``/``Lv`` the audio/visual token counts the model masks;
* ``for_micro_batch(noise, micro=, rank=, world_size=, batch_size=, device=)`` -> this
  (micro-batch, rank)'s rows ``[batch_size, L]`` of each (see :func:`cavkit.engine.data.batch_slice`);
* ``eval_noise(index, size, rank=, world_size=, device=)`` -> ``(audio [size, La], visual [size, Lv])``
  for validation batch ``index`` of this rank (fixed by the seed, so validation losses repeat).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavkit.engine.data import batch_slice, derive_seed

STEP_SALT = 2
EVAL_SALT = 9


def probe_token_counts(model: nn.Module, batch: dict[str, Any], device: torch.device) -> tuple[int, int] | None:
    """Token counts ``(La, Lv)`` the model masks, from one forward of one item (RNG untouched).

    ``None`` when the model returns no masks (nothing to draw noise for).
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        one = {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = model(one["audio"], one["image"])
    if out.mask_audio is None or out.mask_visual is None:
        return None
    return int(out.mask_audio.shape[1]), int(out.mask_visual.shape[1])


class MaskingNoise:
    """Uniform ``[0, 1)`` masking noise per global batch, drawn from ``(seed, step)``.

    :param seed: the recipe's seed.
    :param global_batch: ``G = batch_size x world_size x grad_accum``.
    :param token_counts: ``(La, Lv)``; ``None`` until :meth:`probe` (or the caller) sets it.
    """

    def __init__(self, seed: int, global_batch: int, token_counts: tuple[int, int] | None = None):
        self.seed = seed
        self.global_batch = global_batch
        self.token_counts = token_counts
        self.probed = token_counts is not None

    def probe(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> None:
        """Learn the token counts from one forward of the first batch (once; RNG untouched)."""
        if not self.probed:
            self.token_counts = probe_token_counts(model, batch, device)
            self.probed = True

    def step_noise(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(audio [G, La], visual [G, Lv])`` for optimiser step ``step`` (0-based), or ``None`` without masks."""
        if self.token_counts is None:
            return None
        la, lv = self.token_counts
        g = torch.Generator().manual_seed(derive_seed(self.seed, step, STEP_SALT))
        return torch.rand(self.global_batch, la, generator=g), torch.rand(self.global_batch, lv, generator=g)

    @staticmethod
    def for_micro_batch(
        noise: tuple[torch.Tensor, torch.Tensor], *, micro: int, rank: int, world_size: int, batch_size: int,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of a step's noise that belong to (micro-batch, rank), on ``device``."""
        where = {"micro": micro, "rank": rank, "world_size": world_size, "batch_size": batch_size}
        return batch_slice(noise[0], **where).to(device), batch_slice(noise[1], **where).to(device)

    def eval_noise(
        self, index: int, size: int, *, rank: int, world_size: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Noise for this rank's validation batch ``index`` of ``size`` items, or ``None`` without masks."""
        if self.token_counts is None:
            return None
        g = torch.Generator().manual_seed(derive_seed(self.seed, index * world_size + rank, EVAL_SALT))
        audio = torch.rand(size, self.token_counts[0], generator=g).to(device)
        visual = torch.rand(size, self.token_counts[1], generator=g).to(device)
        return audio, visual

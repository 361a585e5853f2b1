"""Maskers: keep the tokens with the lowest noise, MAE convention (spec §2.2).

``masker(tokens [B,L,D], noise [B,L] | None, grid=(rows, cols)) -> Masked`` (the
:class:`~cavkit.interfaces.Masker` contract). Given ``noise`` the result is fully determined by it,
row by row (pass the noise a previous run drew to reproduce its mask; the trainer's per-step noise
keeps masks identical across resumes and device counts); without it the masker draws ``U[0,1)``
noise from torch's RNG. Structured maskers then force whole time columns and/or frequency rows out
by setting their noise to 1.1, choosing the lines from the noise itself (:func:`force_lines`), for
any grid (upstream only supports the 8x64 grid of T=1024, spec §10.25). Every sample keeps ``int(L·(1-ratio))``
tokens, which the decoder relies on.
"""

from __future__ import annotations

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import Masked

FORCED = 1.1


def mask_with_noise(tokens: torch.Tensor, noise: torch.Tensor, ratio: float) -> Masked:
    """Keep the ``int(L·(1-ratio))`` lowest-noise tokens (in ascending-noise order)."""
    b, length, dim = tokens.shape
    if noise.shape != (b, length):
        raise UsageError(f"masking noise has shape {list(noise.shape)}, expected [{b}, {length}] (batch, tokens)")
    keep = int(length * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(b, length, device=tokens.device, dtype=torch.float32)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return Masked(kept=kept, mask=mask, ids_restore=ids_restore)


class UnstructuredMasker(nn.Module):
    """Uniformly random masking at ``ratio``."""

    def __init__(self, ratio: float = 0.75):
        super().__init__()
        if not 0.0 <= ratio < 1.0:
            raise UsageError(f"masking ratio must be in [0, 1), got {ratio}")
        self.ratio = ratio

    def forward(
        self, tokens: torch.Tensor, noise: torch.Tensor | None = None, *, grid: tuple[int, int] | None = None
    ) -> Masked:
        if noise is None:
            noise = torch.rand(tokens.shape[0], tokens.shape[1], device=tokens.device)
        return mask_with_noise(tokens, noise.to(tokens.device), self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


def force_lines(noise: torch.Tensor, grid: tuple[int, int], n_rows: int, n_cols: int) -> torch.Tensor:
    """``noise [B, rows·cols]`` with whole lines of each sample set to :data:`FORCED` (removed first).

    The lines come from the noise itself, so the mask stays a function of the noise (the
    :class:`~cavkit.interfaces.Masker` contract): sample ``i`` loses the ``n_cols`` time columns
    whose noise in grid row 0 is highest and the ``n_rows`` frequency rows whose noise in grid
    column 0 is highest (each a uniformly random choice when the noise is ``U[0,1)``).
    """
    b = noise.shape[0]
    rows, cols = grid
    lines = noise.reshape(b, rows, cols)
    out = lines.clone()
    if n_cols:
        drop = lines[:, 0, :].argsort(dim=1, descending=True)[:, :n_cols]
        out.scatter_(2, drop[:, None, :].expand(-1, rows, -1), FORCED)
    if n_rows:
        drop = lines[:, :, 0].argsort(dim=1, descending=True)[:, :n_rows]
        out.scatter_(1, drop[:, :, None].expand(-1, -1, cols), FORCED)
    return out.reshape(b, rows * cols)


class _StructuredMasker(UnstructuredMasker):
    def forced_lines(self, rows: int, cols: int) -> tuple[int, int]:
        """``(frequency rows, time columns)`` removed whole."""
        raise NotImplementedError

    def forward(
        self, tokens: torch.Tensor, noise: torch.Tensor | None = None, *, grid: tuple[int, int] | None = None
    ) -> Masked:
        b, length = tokens.shape[:2]
        if grid is None or grid[0] * grid[1] != length:
            raise UsageError(
                f"{type(self).__name__} needs the token grid (frequency rows, time columns) of the {length} tokens; "
                f"got grid={grid}"
            )
        if noise is None:
            noise = torch.rand(b, length, device=tokens.device)
        if noise.shape != (b, length):
            raise UsageError(f"masking noise has shape {list(noise.shape)}, expected [{b}, {length}] (batch, tokens)")
        noise = force_lines(noise.to(tokens.device), grid, *self.forced_lines(*grid))
        return mask_with_noise(tokens, noise, self.ratio)


class TimeMasker(_StructuredMasker):
    """Removes ``int(cols·ratio)`` whole time columns (audio only)."""

    def forced_lines(self, rows: int, cols: int) -> tuple[int, int]:
        return 0, int(cols * self.ratio)


class FreqMasker(_StructuredMasker):
    """Removes ``int(rows·ratio)`` whole frequency rows (audio only)."""

    def forced_lines(self, rows: int, cols: int) -> tuple[int, int]:
        return int(rows * self.ratio), 0


class TimeFreqMasker(_StructuredMasker):
    """Forces ``int(cols·ratio·0.7)`` columns and ``int(rows·ratio·0.7)`` rows out, as upstream ``tf``."""

    def forced_lines(self, rows: int, cols: int) -> tuple[int, int]:
        return int(rows * self.ratio * 0.7), int(cols * self.ratio * 0.7)


def build_unstructured(config) -> UnstructuredMasker:
    return UnstructuredMasker(config.ratio)


def build_time(config) -> TimeMasker:
    return TimeMasker(config.ratio)


def build_freq(config) -> FreqMasker:
    return FreqMasker(config.ratio)


def build_time_freq(config) -> TimeFreqMasker:
    return TimeFreqMasker(config.ratio)

"""Maskers: keep the tokens with the lowest noise, MAE convention (spec §2.2).

``masker(tokens [B,L,D], noise [B,L] | None, grid=(rows, cols)) -> Masked``. Given ``noise`` the
result is fully determined by it (pass the noise a previous run drew to reproduce its mask);
without it the masker draws ``U[0,1)`` noise from torch's RNG. Structured maskers then force whole
time columns and/or frequency rows out by setting their noise to 1.1, for any grid (upstream
only supports the 8x64 grid of T=1024, spec §10.25). Every sample keeps ``int(L·(1-ratio))``
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

    def draw_noise(self, b: int, grid: tuple[int, int] | None, length: int, device) -> torch.Tensor:
        return torch.rand(b, length, device=device)

    def forward(
        self, tokens: torch.Tensor, noise: torch.Tensor | None = None, *, grid: tuple[int, int] | None = None
    ) -> Masked:
        if noise is None:
            noise = self.draw_noise(tokens.shape[0], grid, tokens.shape[1], tokens.device)
        return mask_with_noise(tokens, noise.to(tokens.device), self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


class _StructuredMasker(UnstructuredMasker):
    def forced_lines(self, rows: int, cols: int) -> tuple[int, int]:
        raise NotImplementedError

    def draw_noise(self, b: int, grid: tuple[int, int] | None, length: int, device) -> torch.Tensor:
        if grid is None or grid[0] * grid[1] != length:
            raise UsageError(
                f"{type(self).__name__} needs the token grid (frequency rows, time columns) of the {length} tokens; "
                f"got grid={grid}"
            )
        rows, cols = grid
        n_rows, n_cols = self.forced_lines(rows, cols)
        noise = torch.rand(b, rows, cols, device=device)
        for i in range(b):
            if n_cols:
                noise[i, :, torch.randperm(cols, device=device)[:n_cols]] = FORCED
            if n_rows:
                noise[i, torch.randperm(rows, device=device)[:n_rows], :] = FORCED
        return noise.reshape(b, length)


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


def build_unstructured(config, **_: object) -> UnstructuredMasker:
    return UnstructuredMasker(config.ratio)


def build_time(config, **_: object) -> TimeMasker:
    return TimeMasker(config.ratio)


def build_freq(config, **_: object) -> FreqMasker:
    return FreqMasker(config.ratio)


def build_time_freq(config, **_: object) -> TimeFreqMasker:
    return TimeFreqMasker(config.ratio)

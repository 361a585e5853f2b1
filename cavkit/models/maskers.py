"""Maskers: keep the tokens with the lowest noise, MAE convention (spec §2.2).

``masker(tokens [B,L,D], noise [B,L] | None, grid=(rows, cols)) -> Masked`` (the
:class:`~cavkit.interfaces.Masker` contract). Given ``noise`` the result is fully determined by it,
row by row (pass the noise a previous run drew to reproduce its mask; the trainer's per-step noise
keeps masks identical across resumes and device counts); without it the masker draws ``U[0,1)``
noise from torch's RNG. Structured maskers then force whole time columns and/or frequency rows out
by setting their noise to 1.1, choosing the lines from the noise itself (:func:`force_lines`), for
any grid (upstream only supports the 8x64 grid of T=1024, spec §10.25). Every sample keeps ``int(L·(1-ratio))``
tokens, which the decoder relies on.

Multi-ratio masking (published Sync option ``multi_ratio_masking``, spec §5.1.6): in training mode
the ratio of each step is drawn uniformly from ``ratio_range`` (upstream U(0.6, 0.9)). The trainer
announces every optimiser step through :func:`announce_training_step`, and the ratio is then a pure
function of ``(seed, step)`` (:func:`step_ratio`): the same on every rank, for every micro-batch of
the step, for both modalities, and after a resume. Upstream re-seeded its generator with 0 on every
call outside torch.distributed, so its "random" ratio was constant (quirk 25; fixed). Outside a
trainer (no step announced) the ratio is drawn per call from torch's RNG; in eval mode ``ratio`` is used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import Masked

FORCED = 1.1
_RATIO_SALT = 0x5EED_4A71


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


def step_ratio(seed: int, step: int, ratio_range: tuple[float, float]) -> float:
    """The masking ratio of optimiser ``step`` (0-based): uniform in ``ratio_range``, a pure function of ``(seed, step)``."""
    low, high = ratio_range
    u = np.random.default_rng([seed % 2**63, step, _RATIO_SALT]).random()
    return float(low + (high - low) * u)


def announce_training_step(model: nn.Module, *, seed: int, step: int) -> None:
    """Tell every part of ``model`` that has ``set_training_step`` which optimiser step comes next.

    The trainer calls this before each step's forward passes (multi-ratio maskers fix their ratio).
    """
    for module in model.modules():
        hook = getattr(module, "set_training_step", None)
        if callable(hook):
            hook(seed=seed, step=step)


class UnstructuredMasker(nn.Module):
    """Uniformly random masking at ``ratio``, or at a per-step ratio drawn from ``ratio_range`` (module docstring)."""

    def __init__(self, ratio: float = 0.75, *, ratio_range: tuple[float, float] | None = None):
        super().__init__()
        for value in (ratio, *(ratio_range or ())):
            if not 0.0 <= value < 1.0:
                raise UsageError(f"masking ratio must be in [0, 1), got {value}")
        if ratio_range is not None and ratio_range[0] > ratio_range[1]:
            raise UsageError(f"masking ratio_range must be [low, high] with low <= high, got {list(ratio_range)}")
        self.ratio = ratio
        self.ratio_range = tuple(ratio_range) if ratio_range is not None else None
        self._announced: float | None = None

    def set_training_step(self, *, seed: int, step: int) -> None:
        """Fix the ratio of the coming step from ``(seed, step)`` (multi-ratio masking only)."""
        if self.ratio_range is not None:
            self._announced = step_ratio(seed, step, self.ratio_range)

    def current_ratio(self) -> float:
        """The ratio of this forward: ``ratio`` in eval mode or without ``ratio_range``; else the announced
        step's ratio, or (no step announced) a draw from torch's RNG."""
        if self.ratio_range is None or not self.training:
            return self.ratio
        if self._announced is not None:
            return self._announced
        low, high = self.ratio_range
        return low + (high - low) * float(torch.rand(()))

    def forward(
        self, tokens: torch.Tensor, noise: torch.Tensor | None = None, *, grid: tuple[int, int] | None = None
    ) -> Masked:
        if noise is None:
            noise = torch.rand(tokens.shape[0], tokens.shape[1], device=tokens.device)
        return mask_with_noise(tokens, noise.to(tokens.device), self.current_ratio())

    def extra_repr(self) -> str:
        extra = f", ratio_range={list(self.ratio_range)}" if self.ratio_range is not None else ""
        return f"ratio={self.ratio}{extra}"


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
    def forced_lines(self, rows: int, cols: int, ratio: float | None = None) -> tuple[int, int]:
        """``(frequency rows, time columns)`` removed whole at ``ratio`` (default: :attr:`ratio`)."""
        raise NotImplementedError

    def _or_fixed(self, ratio: float | None) -> float:
        return self.ratio if ratio is None else ratio

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
        ratio = self.current_ratio()
        noise = force_lines(noise.to(tokens.device), grid, *self.forced_lines(*grid, ratio))
        return mask_with_noise(tokens, noise, ratio)


class TimeMasker(_StructuredMasker):
    """Removes ``int(cols·ratio)`` whole time columns (audio only)."""

    def forced_lines(self, rows: int, cols: int, ratio: float | None = None) -> tuple[int, int]:
        return 0, int(cols * self._or_fixed(ratio))


class FreqMasker(_StructuredMasker):
    """Removes ``int(rows·ratio)`` whole frequency rows (audio only)."""

    def forced_lines(self, rows: int, cols: int, ratio: float | None = None) -> tuple[int, int]:
        return int(rows * self._or_fixed(ratio)), 0


class TimeFreqMasker(_StructuredMasker):
    """Forces ``int(cols·ratio·0.7)`` columns and ``int(rows·ratio·0.7)`` rows out, as upstream ``tf``."""

    def forced_lines(self, rows: int, cols: int, ratio: float | None = None) -> tuple[int, int]:
        r = self._or_fixed(ratio)
        return int(rows * r * 0.7), int(cols * r * 0.7)


def _ratio_range(config) -> tuple[float, float] | None:
    return tuple(config.ratio_range) if config.multi_ratio_masking else None


def build_unstructured(config) -> UnstructuredMasker:
    return UnstructuredMasker(config.ratio, ratio_range=_ratio_range(config))


def build_time(config) -> TimeMasker:
    return TimeMasker(config.ratio, ratio_range=_ratio_range(config))


def build_freq(config) -> FreqMasker:
    return FreqMasker(config.ratio, ratio_range=_ratio_range(config))


def build_time_freq(config) -> TimeFreqMasker:
    return TimeFreqMasker(config.ratio, ratio_range=_ratio_range(config))

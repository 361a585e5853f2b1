"""Fixed 2-D sin-cos position embeddings laid out as upstream ``pos_embed.py`` (spec §1.3)."""

from __future__ import annotations

import numpy as np

from cavkit.errors import UsageError


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``[len(positions), dim]``: sin(p·ω_i) for i < dim/2, then cos(p·ω_i); ω_i = 10000^(-2i/dim)."""
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_pos_embed_2d(dim: int, rows: int, cols: int) -> np.ndarray:
    """Position embeddings ``[rows·cols, dim]`` (float32) for a row-major token grid.

    Token k sits at row h = k // cols, column w = k % cols; its embedding is
    concat(E(w), E(h)): the first half encodes the column (time for audio, x for images), the second
    the row (frequency, y). Computed in float64 as [CAV] does, then cast (spec §10.5).
    """
    if dim % 4:
        raise UsageError(
            f"sin-cos position embeddings need a width divisible by 4, got {dim} (model.embed_dim / decoder.embed_dim)"
        )
    h, w = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    emb = np.concatenate([_sincos_1d(dim // 2, w), _sincos_1d(dim // 2, h)], axis=1)
    return emb.astype(np.float32)

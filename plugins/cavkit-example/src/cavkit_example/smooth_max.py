"""A smooth-max retrieval strategy over per-frame embeddings.

CAV-MAE Sync scores a (query, gallery) pair from the cosine similarities of their K per-frame
embeddings, aggregated with a mean or a max (over all frame pairs, or the time-aligned diagonal).
``smooth_max`` interpolates between the two with a temperature tau::

    score = tau * (logsumexp(S / tau) - log P)

where ``S`` holds the P frame-pair cosines. The score always lies between mean(S) and max(S): it
tends to max(S) as tau -> 0 and to mean(S) as tau -> infinity.
"""

from __future__ import annotations

import math

import torch


class SmoothMax:
    """``strategy(query [N,K,D], gallery [M,K,D]) -> similarity [N,M]``.

    Args:
        temperature: tau > 0.
        pairs: ``"all"`` (K x K pairs) or ``"diagonal"`` (K time-aligned pairs; needs equal K).
        chunk_size: queries scored at once.
    """

    def __init__(self, temperature: float = 0.05, pairs: str = "all", chunk_size: int = 256):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if pairs not in ("all", "diagonal"):
            raise ValueError(f"pairs must be 'all' or 'diagonal', got {pairs!r}")
        self.temperature = temperature
        self.pairs = pairs
        self.chunk_size = chunk_size

    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        if query.dim() != 3 or gallery.dim() != 3 or query.shape[-1] != gallery.shape[-1]:
            raise ValueError(
                f"expected query [N,K,D] and gallery [M,K,D], got {list(query.shape)} and {list(gallery.shape)}"
            )
        if self.pairs == "diagonal" and query.shape[1] != gallery.shape[1]:
            raise ValueError(f"diagonal pairs need equal frame counts, got {query.shape[1]} and {gallery.shape[1]}")
        rows = [self._score(chunk, gallery) for chunk in query.split(self.chunk_size)]
        return torch.cat(rows)

    def _score(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        if self.pairs == "diagonal":
            cos = torch.einsum("nkd,mkd->nmk", query, gallery)  # [n, M, K]
        else:
            cos = torch.einsum("nkd,mjd->nmkj", query, gallery).flatten(2)  # [n, M, K*K]
        tau = self.temperature
        return tau * (torch.logsumexp(cos / tau, dim=-1) - math.log(cos.shape[-1]))


def build_smooth_max(config) -> SmoothMax:
    """Factory registered with cavkit: ``factory(config, **context)``."""
    return SmoothMax(config.temperature, config.pairs, config.chunk_size)

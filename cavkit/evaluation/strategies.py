"""Retrieval strategies: clip-to-clip similarity from L2-normalised per-frame embeddings.

Every strategy is a callable ``strategy(query [N,K,D], gallery [M,K,D]) -> similarity [N,M]``
(see :mod:`cavkit.interfaces`). The built-ins are the vectorised forms of spec §8.2 (CAV-MAE Sync
``get_agg_sim_mat``) and §8.1 (CAV-MAE pooled cosine); they give the published similarities up to
float rounding, and identical embeddings score identically, so the exact ties of the published
metrics stay ties (the reference fixture's tie set checks this). They are evaluation-only: no
gradients flow through them.

A strategy may also implement :meth:`RetrievalStrategy.vectors`, mapping clips to single vectors
whose inner products are the similarities; the index-based path (:mod:`cavkit.evaluation.index`)
needs it. ``symmetric = True`` declares ``S(q, g) == S(g, q).T`` so that both retrieval directions
come from one similarity matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cavkit.errors import UsageError
from cavkit.evaluation.configs import (
    DEFAULT_CHUNK_MB,
    DiagonalMaxConfig,
    DiagonalMeanConfig,
    MaxConfig,
    MeanConfig,
    PooledConfig,
)

_MIB = 1 << 20


def check_pair(query: torch.Tensor, gallery: torch.Tensor, *, same_frames: bool) -> None:
    """Raise :class:`UsageError` unless ``query [N,K,D]`` and ``gallery [M,K',D]`` fit together."""
    if query.dim() != 3 or gallery.dim() != 3:
        raise UsageError(
            f"retrieval strategies take per-frame embeddings [N,K,D]; got query {tuple(query.shape)} "
            f"and gallery {tuple(gallery.shape)}"
        )
    if query.shape[2] != gallery.shape[2]:
        raise UsageError(f"embedding widths differ: query D={query.shape[2]}, gallery D={gallery.shape[2]}")
    if same_frames and query.shape[1] != gallery.shape[1]:
        raise UsageError(
            f"time-aligned strategies need the same frame count on both sides: "
            f"query K={query.shape[1]}, gallery K={gallery.shape[1]}"
        )


class RetrievalStrategy:
    """Base class of the built-in strategies (third-party ones may be any callable)."""

    #: ``S(q, g) == S(g, q).T``; lets one matrix serve both directions.
    symmetric: bool = True
    #: whether :meth:`vectors` exists (index-based retrieval).
    has_vectors: bool = False

    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def vectors(self, clips: torch.Tensor) -> torch.Tensor:
        """``[N,K,D] -> [N,D']`` such that ``S = vectors(q) @ vectors(g).T``."""
        raise UsageError(f"strategy {type(self).__name__} has no single-vector form; use the exact (matrix) path")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Pooled(RetrievalStrategy):
    """CAV-MAE (§8.1): mean over frames, L2-normalise, cosine. For K = 1 this is plain cosine."""

    has_vectors = True

    def __init__(self, config: PooledConfig | None = None):
        self.config = config or PooledConfig()

    def vectors(self, clips: torch.Tensor) -> torch.Tensor:
        return F.normalize(clips.mean(dim=1), dim=-1)

    @torch.no_grad()
    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        check_pair(query, gallery, same_frames=False)
        return self.vectors(query) @ self.vectors(gallery).T


def diagonal_frame_products(query: torch.Tensor, gallery: torch.Tensor, chunk_mb: int = DEFAULT_CHUNK_MB):
    """Yield ``(start, stop, P)`` with ``P [K, stop-start, M]``: ``P[k,i,j] = <q_ik, g_jk>``.

    One batched GEMM per chunk of query clips; a chunk of ``P`` stays within ``chunk_mb``. The
    diagonal strategies reduce ``P`` over its first axis (mean or max); evaluating both from one
    pass (:func:`diagonal_mean_and_max`) gives bit-identical results to evaluating each alone.
    """
    check_pair(query, gallery, same_frames=True)
    n, k, _ = query.shape
    m = gallery.shape[0]
    by_frame_q = query.transpose(0, 1)  # [K, N, D]
    by_frame_g_t = gallery.permute(1, 2, 0)  # [K, D, M]
    step = max(1, (chunk_mb * _MIB) // max(1, k * m * query.element_size()))
    for start in range(0, n, step):
        stop = min(n, start + step)
        yield start, stop, torch.bmm(by_frame_q[:, start:stop], by_frame_g_t)


@torch.no_grad()
def diagonal_mean_and_max(query: torch.Tensor, gallery: torch.Tensor, chunk_mb: int = DEFAULT_CHUNK_MB):
    """``(diagonal_mean [N,M], diagonal_max [N,M])`` from one pass over the frame products."""
    n, m = query.shape[0], gallery.shape[0]
    mean, best = query.new_empty((n, m)), query.new_empty((n, m))
    for start, stop, products in diagonal_frame_products(query, gallery, chunk_mb):
        torch.mean(products, dim=0, out=mean[start:stop])
        torch.amax(products, dim=0, out=best[start:stop])
    return mean, best


class DiagonalMean(RetrievalStrategy):
    """Sync ``diagonal_mean`` (§8.2): S = (1/K) sum_k <q_k, g_k> (the same FLOPs as one [N, K*D] GEMM)."""

    has_vectors = True

    def __init__(self, config: DiagonalMeanConfig | None = None):
        self.config = config or DiagonalMeanConfig()

    def vectors(self, clips: torch.Tensor) -> torch.Tensor:
        n, k, d = clips.shape
        return clips.reshape(n, k * d) / k**0.5

    @torch.no_grad()
    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        out = query.new_empty((query.shape[0], gallery.shape[0]))
        for start, stop, products in diagonal_frame_products(query, gallery, self.config.chunk_mb):
            torch.mean(products, dim=0, out=out[start:stop])
        return out


class DiagonalMax(RetrievalStrategy):
    """Sync ``diagonal_max`` (§8.2): S = max_k <q_k, g_k>, from batched per-frame GEMMs."""

    def __init__(self, config: DiagonalMaxConfig | None = None):
        self.config = config or DiagonalMaxConfig()

    @torch.no_grad()
    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        out = query.new_empty((query.shape[0], gallery.shape[0]))
        for start, stop, products in diagonal_frame_products(query, gallery, self.config.chunk_mb):
            torch.amax(products, dim=0, out=out[start:stop])
        return out


class Mean(RetrievalStrategy):
    """Sync ``mean`` (§8.2): mean over all K x K pairs = <mean_k q_k, mean_l g_l> (no re-normalising)."""

    has_vectors = True

    def __init__(self, config: MeanConfig | None = None):
        self.config = config or MeanConfig()

    def vectors(self, clips: torch.Tensor) -> torch.Tensor:
        return clips.mean(dim=1)

    @torch.no_grad()
    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        check_pair(query, gallery, same_frames=False)
        return self.vectors(query) @ self.vectors(gallery).T


class Max(RetrievalStrategy):
    """Sync ``max`` (§8.2): max over all K x K pairs.

    One GEMM ``[N*K, D] x [D, M*K]`` viewed as ``[N,K,M,K]`` and reduced by max, computed in chunks
    of query clips so that no chunk of the product exceeds ``chunk_mb``: peak memory stays bounded
    at any N (the whole product is 2.4 GB at N = M = 1545, K = 16).
    """

    def __init__(self, config: MaxConfig | None = None):
        self.config = config or MaxConfig()

    def rows_per_chunk(self, kq: int, m: int, kg: int, itemsize: int = 4) -> int:
        per_row = max(1, kq * m * kg * itemsize)
        return max(1, (self.config.chunk_mb * _MIB) // per_row)

    @torch.no_grad()
    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        check_pair(query, gallery, same_frames=False)
        n, kq, d = query.shape
        m, kg, _ = gallery.shape
        flat_gallery_t = gallery.reshape(m * kg, d).T
        out = query.new_empty((n, m))
        step = self.rows_per_chunk(kq, m, kg, query.element_size())
        buffer = None
        for start in range(0, n, step):
            stop = min(n, start + step)
            rows = query[start:stop].reshape((stop - start) * kq, d)
            if buffer is None or buffer.shape[0] != rows.shape[0]:
                buffer = query.new_empty((rows.shape[0], m * kg))
            torch.matmul(rows, flat_gallery_t, out=buffer)
            # max over gallery frames first (contiguous innermost axis), then over query frames
            per_query_frame = buffer.view(stop - start, kq, m, kg).amax(dim=3)
            torch.amax(per_query_frame, dim=1, out=out[start:stop])
        return out


def build_pooled(config: PooledConfig) -> Pooled:
    return Pooled(config)


def build_diagonal_mean(config: DiagonalMeanConfig) -> DiagonalMean:
    return DiagonalMean(config)


def build_diagonal_max(config: DiagonalMaxConfig) -> DiagonalMax:
    return DiagonalMax(config)


def build_mean(config: MeanConfig) -> Mean:
    return Mean(config)


def build_max(config: MaxConfig) -> Max:
    return Max(config)

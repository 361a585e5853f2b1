"""Parameters of the evaluation components (retrieval strategies, kNN). No torch imports here.

Strategies follow spec §8.2 (CAV-MAE Sync ``get_agg_sim_mat``) and §8.1 (CAV-MAE pooled cosine).
"""

from __future__ import annotations

from typing import Literal

import attrs

from cavkit.config import at_least, param

#: Default budget (MiB) for one chunk of an intermediate similarity product.
DEFAULT_CHUNK_MB = 64


@attrs.frozen(kw_only=True)
class PooledConfig:
    """CAV-MAE protocol (spec §8.1): average the frames, L2-normalise, cosine."""


def _chunk_param():
    return param(
        DEFAULT_CHUNK_MB,
        help="memory budget (MiB) of one chunk of per-frame products; bounds peak memory at any N",
        validator=at_least(1),
    )


@attrs.frozen(kw_only=True)
class DiagonalMeanConfig:
    """Mean cosine of time-aligned frame pairs (spec §8.2, the Sync README default)."""

    chunk_mb: int = _chunk_param()


@attrs.frozen(kw_only=True)
class DiagonalMaxConfig:
    """Max cosine over time-aligned frame pairs (spec §8.2)."""

    chunk_mb: int = _chunk_param()


@attrs.frozen(kw_only=True)
class MeanConfig:
    """Mean cosine over all K x K frame pairs (spec §8.2)."""


@attrs.frozen(kw_only=True)
class MaxConfig:
    """Max cosine over all K x K frame pairs (spec §8.2); the (N*K) x (M*K) product is chunked."""

    chunk_mb: int = _chunk_param()


@attrs.frozen(kw_only=True)
class KnnConfig:
    """kNN classification on frozen embeddings (cosine similarity)."""

    k: int = param(20, help="neighbours that vote", validator=at_least(1))
    weighting: Literal["uniform", "softmax"] = param(
        "softmax", help="uniform votes, or exp(similarity / temperature) weights"
    )
    temperature: float = param(0.07, help="temperature of the softmax weighting", validator=at_least(1e-6))

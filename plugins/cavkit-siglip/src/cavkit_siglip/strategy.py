"""A retrieval strategy that tolerates small temporal shifts between per-frame embeddings.

The published strategies (spec §8.2) either compare time-aligned frames only (``diagonal_mean``,
``diagonal_max``) or ignore time entirely (``mean``, ``max``). ``soft_alignment`` sits in between:
each frame is matched against the frames of the other clip that lie within ``window`` frames of
it, softly (softmax-weighted by similarity) or hard (best frame), and the matches are averaged::

    c_kl        = q_k . g_l                                     (inputs are L2-normalised)
    A(q -> g)   = (1/K) sum_k  softmax-mean_{|l-k| <= w} c_kl
    A(g -> q)   = (1/K) sum_l  softmax-mean_{|k-l| <= w} c_kl
    S(q, g)     = (A(q -> g) + A(g -> q)) / 2

Averaging both directions makes ``S(q, g) == S(g, q)``, so, as with the published four, the
visual->audio matrix is the transpose of the audio->visual one. With ``window = 0`` it is exactly
``diagonal_mean``.
"""

from __future__ import annotations

import torch

from cavkit.errors import UsageError

from cavkit_siglip.configs import SoftAlignmentConfig


def _soft_best(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Reduce the last axis of ``scores`` over its ``valid`` entries: max, or softmax-weighted mean."""
    if temperature == 0:
        return scores.masked_fill(~valid, float("-inf")).amax(dim=-1)
    weights = torch.softmax((scores / temperature).masked_fill(~valid, float("-inf")), dim=-1)
    return (weights * scores.masked_fill(~valid, 0.0)).sum(dim=-1)


def soft_alignment_similarity(
    query: torch.Tensor, gallery: torch.Tensor, *, window: int = 1, temperature: float = 0.05
) -> torch.Tensor:
    """Shift-tolerant clip similarity.

    :param query: L2-normalised per-frame embeddings ``[N,K,D]``.
    :param gallery: ``[M,K,D]``, same ``K``.
    :param window: largest frame shift considered (clipped to ``K - 1``).
    :param temperature: 0 for a hard max over the window, else the softmax temperature.
    :returns: ``[N,M]``; ``S[i,j]`` scores query ``i`` against gallery ``j``.
    """
    if query.ndim != 3 or gallery.ndim != 3 or query.shape[1:] != gallery.shape[1:]:
        raise UsageError(
            f"soft_alignment needs per-frame embeddings query [N,K,D] and gallery [M,K,D] with the same K and D; "
            f"got {tuple(query.shape)} and {tuple(gallery.shape)}"
        )
    n, k, _ = query.shape
    m = gallery.shape[0]
    w = min(window, k - 1)
    # Band of frame-pair similarities, indexed by (query frame, shift) and by (gallery frame, shift).
    by_query = query.new_zeros(n, m, k, 2 * w + 1)
    by_gallery = query.new_zeros(n, m, k, 2 * w + 1)
    valid_q = torch.zeros(k, 2 * w + 1, dtype=torch.bool, device=query.device)
    valid_g = torch.zeros_like(valid_q)
    for slot, shift in enumerate(range(-w, w + 1)):
        lo, hi = max(0, -shift), k - max(0, shift)  # query frames that have a partner at +shift
        sims = torch.einsum("nkd,mkd->nmk", query[:, lo:hi], gallery[:, lo + shift : hi + shift])
        by_query[:, :, lo:hi, slot] = sims
        by_gallery[:, :, lo + shift : hi + shift, slot] = sims
        valid_q[lo:hi, slot] = True
        valid_g[lo + shift : hi + shift, slot] = True
    forward = _soft_best(by_query, valid_q, temperature).mean(dim=-1)
    backward = _soft_best(by_gallery, valid_g, temperature).mean(dim=-1)
    return (forward + backward) / 2


class SoftAlignment:
    """``strategy(query [N,K,D], gallery [M,K,D]) -> similarity [N,M]``, scored in query chunks."""

    #: ``S(q, g) == S(g, q).T``: one matrix serves both retrieval directions.
    symmetric = True

    def __init__(self, config: SoftAlignmentConfig):
        self.window = config.window
        self.temperature = config.temperature
        self.chunk_size = config.chunk_size

    @torch.no_grad()
    def __call__(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                soft_alignment_similarity(chunk, gallery, window=self.window, temperature=self.temperature)
                for chunk in query.split(self.chunk_size)
            ],
            dim=0,
        )

    def __repr__(self) -> str:
        return f"SoftAlignment(window={self.window}, temperature={self.temperature})"


def build_soft_alignment(config: SoftAlignmentConfig) -> SoftAlignment:
    """Factory registered as retrieval_strategy ``soft_alignment``."""
    return SoftAlignment(config)

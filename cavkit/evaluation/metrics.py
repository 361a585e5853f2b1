"""Retrieval metrics (R@1/5/10, median and mean rank) with two tie modes (spec §8.1, quirk 16).

Each query's true match is its own index (query i matches gallery item i). Per query we count

* ``greater[i] = #{j : S[i,j] > S[i,i]}`` and
* ``equal[i]   = #{j : S[i,j] == S[i,i]}`` (at least 1: the match itself),

which is all either mode needs, so ranks can be counted chunk by chunk without keeping the matrix.

``strict`` (default): a tie counts against the query, rank_i = greater_i + equal_i - 1 (0-based).
``upstream``: the published ``compute_metrics`` exactly. It sorts each row and records *every*
position holding the match's value, so a row with t tied values contributes t hits
(positions greater_i .. greater_i + t - 1) and the denominator is the total number of hits.
Without ties both modes agree. Ranks are reported 1-based; R@k are fractions in [0, 1].
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from cavkit.errors import DataError, UsageError

TieMode = Literal["strict", "upstream"]
TIE_MODES: tuple[str, ...] = ("strict", "upstream")
RECALL_AT: tuple[int, ...] = (1, 5, 10)


def count_against_diagonal(similarity: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``greater`` and ``equal`` counts ``[n]`` for rows ``offset .. offset+n`` of a similarity matrix.

    :param similarity: ``[n, M]``, row r holds query ``offset + r`` against every gallery item.
    :raises DataError: if a similarity is not finite (NaN or inf embeddings).
    """
    n = similarity.shape[0]
    if not torch.isfinite(similarity).all():
        bad = int((~torch.isfinite(similarity)).any(dim=1).nonzero()[0, 0]) + offset
        raise DataError(f"similarity of query {bad} is not finite: the embeddings contain NaN or inf")
    cols = torch.arange(offset, offset + n, device=similarity.device)
    if offset + n > similarity.shape[1]:
        raise UsageError(
            f"query {offset + n - 1} has no matching gallery item: the gallery holds {similarity.shape[1]}; "
            "retrieval pairs query i with gallery item i, so both sides need the same clips"
        )
    match = similarity.gather(1, cols[:, None])
    greater = (similarity > match).sum(dim=1)
    equal = (similarity == match).sum(dim=1)
    return greater.cpu(), equal.cpu()


def ranks(greater: torch.Tensor, equal: torch.Tensor, tie_mode: TieMode = "strict") -> np.ndarray:
    """0-based hit positions: one per query (``strict``) or one per tied position (``upstream``)."""
    greater = greater.to(torch.int64)
    equal = equal.to(torch.int64)
    if tie_mode == "strict":
        return (greater + equal - 1).numpy()
    if tie_mode == "upstream":
        starts = torch.repeat_interleave(greater, equal)
        within = torch.arange(int(equal.sum())) - torch.repeat_interleave(torch.cumsum(equal, 0) - equal, equal)
        return (starts + within).numpy()
    raise UsageError(f"unknown tie mode {tie_mode!r}; choose one of {', '.join(TIE_MODES)}")


def metrics_from_counts(greater: torch.Tensor, equal: torch.Tensor, tie_mode: TieMode = "strict") -> dict[str, float]:
    """R@1/5/10 (fractions), ``MedR`` (median rank, 1-based, numpy median) and ``MeanR`` (1-based)."""
    positions = ranks(greater, equal, tie_mode)
    if positions.size == 0:
        raise UsageError("retrieval needs at least one query")
    out = {f"R{k}": float(np.sum(positions < k)) / positions.size for k in RECALL_AT}
    out["MedR"] = float(np.median(positions) + 1)
    out["MeanR"] = float(np.mean(positions) + 1)
    out["queries"] = int(greater.numel())
    return out


def retrieval_metrics(similarity: torch.Tensor, tie_mode: TieMode = "strict") -> dict[str, float]:
    """Metrics of a full similarity matrix ``[N, M]`` (N <= M) whose true matches are on the diagonal."""
    greater, equal = count_against_diagonal(similarity)
    return metrics_from_counts(greater, equal, tie_mode)

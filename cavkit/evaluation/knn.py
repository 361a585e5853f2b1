"""k-nearest-neighbour classification on frozen embeddings.

Each query clip votes with its ``k`` most similar training clips (cosine of L2-normalised vectors);
votes are the neighbours' label vectors weighted uniformly or by exp(similarity / temperature).
The resulting ``[N,C]`` scores go through :func:`cavkit.evaluation.classification.classification_metrics`
(mAP for multi-label sets, accuracy for single-label ones). Queries are scored in chunks, so the
query x train similarity never exists in full.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cavkit.errors import UsageError
from cavkit.evaluation.configs import KnnConfig


def clip_vectors(per_frame: torch.Tensor) -> torch.Tensor:
    """``[N,K,D]`` per-frame (or ``[N,D]``) embeddings -> L2-normalised clip vectors ``[N,D]``."""
    if per_frame.dim() == 3:
        per_frame = per_frame.mean(dim=1)
    if per_frame.dim() != 2:
        raise UsageError(f"kNN needs embeddings [N,D] or [N,K,D], got {tuple(per_frame.shape)}")
    return F.normalize(per_frame.float(), dim=-1)


@torch.inference_mode()
def knn_scores(
    query: torch.Tensor,
    train: torch.Tensor,
    train_labels: torch.Tensor,
    config: KnnConfig | None = None,
    *,
    chunk: int = 1024,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Class scores ``[N,C]`` for ``query [N,D]`` from ``train [M,D]`` with labels ``[M,C]``.

    :param exclude_self: leave-one-out (query i is train item i; it does not vote for itself).
    """
    config = config or KnnConfig()
    query, train = clip_vectors(query), clip_vectors(train)
    if train_labels.dim() != 2 or train_labels.shape[0] != train.shape[0]:
        raise UsageError(
            f"train labels must be [M, C] with M = {train.shape[0]} train clips; got {tuple(train_labels.shape)}"
        )
    k = min(config.k, train.shape[0] - (1 if exclude_self else 0))
    if k < 1:
        raise UsageError("kNN needs at least one training clip to vote")
    labels = train_labels.float().to(query.device)
    out = []
    for start in range(0, query.shape[0], chunk):
        sims = query[start : start + chunk] @ train.T
        if exclude_self:
            rows = torch.arange(sims.shape[0], device=sims.device)
            sims[rows, rows + start] = float("-inf")
        top, idx = sims.topk(k, dim=1)
        if config.weighting == "softmax":
            weights = torch.exp((top - top[:, :1]) / config.temperature)  # shifted for stability
        else:
            weights = torch.ones_like(top)
        out.append(torch.einsum("nk,nkc->nc", weights / weights.sum(dim=1, keepdim=True), labels[idx]))
    return torch.cat(out)

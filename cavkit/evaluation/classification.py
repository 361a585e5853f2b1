"""Classification metrics (spec §7.1): mAP, accuracy, AUC and d-prime, vectorised over classes.

They follow scikit-learn's definitions, which the published code calls per class:

* ``average_precision``: sum over distinct thresholds of (R_n - R_{n-1}) P_n, tied scores forming
  one threshold (``sklearn.metrics.average_precision_score``). Written as
  AP = (1/P) sum_{i positive} tp(>= s_i) / n(>= s_i).
* ``roc_auc``: the area under the ROC curve with ties counted half, i.e. the Mann-Whitney statistic
  (``sklearn.metrics.roc_auc_score``).
* ``d_prime``: sqrt(2) * Phi^{-1}(AUC) of the mean AUC (the published ``d_prime``).
* ``accuracy``: top-1 of argmax(scores) against argmax(targets) (VGGSound).

Classes without positives (or without negatives, for AUC) have no defined value: they are left out
of the means and counted in ``classes_skipped``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from cavkit.errors import UsageError

Activation = Literal["sigmoid", "softmax", "none"]


def _check(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if scores.dim() != 2 or scores.shape != targets.shape:
        raise UsageError(
            f"scores and targets must both be [N, C]; got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise UsageError("no samples to score")
    return scores.double(), targets.double()


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class AP ``[C]`` (NaN for a class without positives); targets > 0.5 are positives."""
    scores, targets = _check(scores, targets)
    positive = (targets > 0.5).double().T  # [C, N]
    s = scores.T.contiguous()  # [C, N]
    n = s.shape[1]
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    s_desc = s.gather(1, order)
    tp_cum = positive.gather(1, order).cumsum(dim=1)  # true positives among the first r+1
    # for each sample, how many scores are >= its score: the end of its tie group
    ascending = s_desc.flip(1).contiguous()
    n_ge = n - torch.searchsorted(ascending, s.contiguous(), side="left")  # [C, N]
    tp_ge = tp_cum.gather(1, n_ge - 1)
    precision_at = tp_ge / n_ge
    n_pos = positive.sum(dim=1)
    ap = (precision_at * positive).sum(dim=1) / n_pos
    return torch.where(n_pos > 0, ap, torch.full_like(ap, float("nan")))


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class ROC AUC ``[C]`` (NaN for a class lacking positives or negatives)."""
    scores, targets = _check(scores, targets)
    positive = (targets > 0.5).double().T
    s = scores.T.contiguous()
    ascending = torch.sort(s, dim=1).values
    below = torch.searchsorted(ascending, s, side="left")
    at_or_below = torch.searchsorted(ascending, s, side="right")
    mid_rank = (below + at_or_below + 1).double() / 2  # 1-based rank, ties averaged
    n_pos = positive.sum(dim=1)
    n_neg = s.shape[1] - n_pos
    u = (mid_rank * positive).sum(dim=1) - n_pos * (n_pos + 1) / 2
    auc = u / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


def d_prime(auc: float) -> float:
    """sqrt(2) * inverse normal CDF of ``auc`` (the published d-prime of the mean AUC)."""
    return math.sqrt(2.0) * float(torch.special.ndtri(torch.tensor(auc, dtype=torch.float64)))


def accuracy(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy: argmax of scores equals argmax of (possibly smoothed) targets."""
    scores, targets = _check(scores, targets)
    return float((scores.argmax(dim=1) == targets.argmax(dim=1)).double().mean())


def _nanmean(values: torch.Tensor) -> tuple[float, int]:
    keep = ~torch.isnan(values)
    if not keep.any():
        return float("nan"), int(values.numel())
    return float(values[keep].mean()), int((~keep).sum())


def classification_metrics(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``mAP``, ``mAUC``, ``d_prime``, ``accuracy`` and ``classes_skipped`` for scores ``[N,C]``."""
    mean_ap, skipped_ap = _nanmean(average_precision(scores, targets))
    mean_auc, skipped_auc = _nanmean(roc_auc(scores, targets))
    return {
        "mAP": mean_ap,
        "mAUC": mean_auc,
        "d_prime": d_prime(mean_auc) if not math.isnan(mean_auc) else float("nan"),
        "accuracy": accuracy(scores, targets),
        "classes_skipped": max(skipped_ap, skipped_auc),
        "samples": int(scores.shape[0]),
    }


def to_probabilities(logits: torch.Tensor, activation: Activation) -> torch.Tensor:
    """Sigmoid (multi-label, mAP) or softmax (single-label, accuracy), as in the FT evaluation."""
    if activation == "sigmoid":
        return torch.sigmoid(logits.float())
    if activation == "softmax":
        return torch.softmax(logits.float(), dim=-1)
    if activation == "none":
        return logits.float()
    raise UsageError(f"unknown activation {activation!r}; use sigmoid, softmax or none")


def average_over_frames(per_frame_logits: Sequence[torch.Tensor], activation: Activation) -> torch.Tensor:
    """Multi-frame evaluation (§7.1): activate each frame's ``[N,C]`` logits, then average them."""
    if not per_frame_logits:
        raise UsageError("multi-frame evaluation needs at least one frame")
    shapes = {tuple(x.shape) for x in per_frame_logits}
    if len(shapes) != 1:
        raise UsageError(f"per-frame logits differ in shape: {sorted(shapes)}")
    return torch.stack([to_probabilities(x, activation) for x in per_frame_logits]).mean(dim=0)

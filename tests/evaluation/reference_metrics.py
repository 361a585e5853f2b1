"""Reference numbers for the evaluation tests, computed without cavkit's metric code (spec §7.1).

Classification metrics come from scikit-learn, class by class, leaving out the classes where a
metric is undefined; kNN votes are counted query by query in a plain loop, unlike the chunked,
vectorised :func:`cavkit.evaluation.knn.knn_scores`.
"""

from __future__ import annotations

import numpy as np


def classification_reference(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, mAP, mAUC, d-prime and skipped classes of scores ``[N, C]`` against labels ``[N, C]``."""
    from scipy.stats import norm
    from sklearn.metrics import average_precision_score, roc_auc_score

    positive = labels > 0.5
    with_positives = positive.any(0)
    with_both = with_positives & ~positive.all(0)
    ap = [average_precision_score(positive[:, c], scores[:, c]) for c in np.flatnonzero(with_positives)]
    auc = [roc_auc_score(positive[:, c], scores[:, c]) for c in np.flatnonzero(with_both)]
    return {
        "accuracy": float((scores.argmax(1) == labels.argmax(1)).mean()),
        "mAP": float(np.mean(ap)),
        "mAUC": float(np.mean(auc)),
        "d_prime": float(np.sqrt(2) * norm.ppf(np.mean(auc))),
        "classes_skipped": int(labels.shape[1] - with_both.sum()),
    }


def knn_reference(
    query: np.ndarray, train: np.ndarray, train_labels: np.ndarray, k: int, temperature: float, leave_one_out: bool
) -> np.ndarray:
    """Class scores ``[N, C]``: each query's ``k`` most cosine-similar training vectors vote with their
    labels, weighted by exp(similarity / temperature) and normalised to sum 1 (the kNN default)."""
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    scores = np.zeros((len(query), train_labels.shape[1]))
    for i, q in enumerate(query.astype(np.float64)):
        sims = train.astype(np.float64) @ q
        voters = [j for j in np.argsort(-sims, kind="stable") if not (leave_one_out and j == i)][:k]
        weights = np.exp((sims[voters] - sims[voters].max()) / temperature)
        scores[i] = weights @ train_labels[voters] / weights.sum()
    return scores

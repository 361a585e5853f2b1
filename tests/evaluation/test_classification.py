"""Classification metrics (spec §7.1) and kNN classification on embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from cavkit.errors import UsageError
from cavkit.evaluation.classification import (
    accuracy,
    average_over_frames,
    average_precision,
    classification_metrics,
    d_prime,
    roc_auc,
)
from cavkit.evaluation.configs import KnnConfig
from cavkit.evaluation.knn import knn_scores


def test_average_precision_by_hand():
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = (1/1 + 2/3) / 2
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert average_precision(scores, targets).item() == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_treats_tied_scores_as_one_threshold():
    # a positive tied with a negative at the top: precision at that threshold is 1/2 for both positives
    scores = torch.tensor([[0.5], [0.5], [0.2], [0.1]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert average_precision(scores, targets).item() == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_auc_by_hand_with_a_tie():
    # pairs (pos, neg): (0.9,0.8) win, (0.9,0.5) win, (0.5,0.8) loss, (0.5,0.5) tie -> (2 + 0.5)/4
    scores = torch.tensor([[0.9], [0.5], [0.8], [0.5]])
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    assert roc_auc(scores, targets).item() == pytest.approx(2.5 / 4)


def test_d_prime_and_accuracy():
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    assert d_prime(0.8413447460685429) == pytest.approx(math.sqrt(2.0), rel=1e-9)  # Phi(1)
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    smoothed = torch.tensor([[0.05, 0.95], [0.05, 0.95], [0.05, 0.95]])  # label smoothing keeps argmax
    assert accuracy(scores, smoothed) == pytest.approx(2 / 3)


def test_classes_without_positives_are_skipped_not_zeroed():
    scores = torch.tensor([[0.9, 0.2], [0.1, 0.3]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    metrics = classification_metrics(scores, targets)
    assert metrics["mAP"] == 1.0
    assert metrics["classes_skipped"] == 1
    assert math.isnan(average_precision(scores, targets)[1].item())


def test_against_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    torch.manual_seed(0)
    for coarse in (False, True):  # coarse scores have many ties
        scores = torch.randint(0, 5, (120, 6)).float() / 4 if coarse else torch.rand(120, 6)
        targets = (torch.rand(120, 6) < 0.3).float()
        for c in range(6):
            y, s = targets[:, c].numpy(), scores[:, c].numpy()
            assert average_precision(scores, targets)[c].item() == pytest.approx(
                sk.average_precision_score(y, s), abs=1e-12
            )
            assert roc_auc(scores, targets)[c].item() == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


def test_multi_frame_average_applies_the_activation_first():
    logits = [torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])]
    probs = average_over_frames(logits, "softmax")
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0.5]]))
    sig = average_over_frames(logits, "sigmoid")
    torch.testing.assert_close(
        sig, torch.sigmoid(torch.tensor([[0.0, 2.0]])).add(torch.sigmoid(torch.tensor([[2.0, 0.0]]))) / 2
    )
    with pytest.raises(UsageError):
        average_over_frames([], "sigmoid")


def _clusters(n_per_class: int, classes: int, dim: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=g), dim=-1)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    x = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return x, torch.nn.functional.one_hot(labels, classes).float()


def test_knn_recovers_clustered_classes_and_fails_on_shuffled_labels():
    train_x, train_y = _clusters(30, 5, 16, 0.3, seed=0)
    # held-out queries: perturbed copies of every third training clip
    test_x = train_x[::3] + 0.05 * torch.randn(train_x[::3].shape, generator=torch.Generator().manual_seed(1))
    test_y = train_y[::3]
    for weighting in ("uniform", "softmax"):
        scores = knn_scores(test_x, train_x, train_y, KnnConfig(k=5, weighting=weighting))
        assert accuracy(scores, test_y) > 0.95
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(3))]
    chance = accuracy(knn_scores(test_x, train_x, shuffled, KnnConfig(k=5)), test_y)
    assert chance < 0.5


def test_knn_leave_one_out_and_chunking():
    x, y = _clusters(8, 3, 8, 0.2, seed=4)
    full = knn_scores(x, x, y, KnnConfig(k=3), exclude_self=True)
    chunked = knn_scores(x, x, y, KnnConfig(k=3), exclude_self=True, chunk=5)
    torch.testing.assert_close(full, chunked)
    # with self excluded, a query's own label weight comes only from its neighbours
    assert not torch.equal(full, knn_scores(x, x, y, KnnConfig(k=3)))
    with pytest.raises(UsageError, match="train labels"):
        knn_scores(x, x, y[:-1])

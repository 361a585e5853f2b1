"""The sound-prompted segmentation metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import pytest
import torch

from cavkit.evaluation.segmentation import (
    THRESHOLDS,
    SegmentationTally,
    iou_per_threshold,
    pixel_average_precision,
    score_segmentation,
)
from cavkit.pictures.localization import centre_prior


def test_average_precision_by_hand():
    # ranking: 0.9 (object), 0.8 (background), 0.4 (object), 0.1 (background)
    # precision at each object pixel: 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.4]])
    mask = torch.tensor([[True, False], [False, True]])
    assert pixel_average_precision(scores, mask) == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)
    # tied scores form one threshold: all four tied -> precision 2/4 at the only threshold
    assert pixel_average_precision(torch.full((2, 2), 0.3), mask) == pytest.approx(0.5, abs=1e-12)
    assert math.isnan(pixel_average_precision(scores, torch.zeros(2, 2, dtype=torch.bool)))


def test_average_precision_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 12, (9, 11), generator=gen).double() / 11  # many ties
        mask = torch.rand(9, 11, generator=gen) < 0.3
        expected = metrics.average_precision_score(mask.reshape(-1).numpy(), scores.reshape(-1).numpy())
        assert pixel_average_precision(scores, mask) == pytest.approx(expected, abs=1e-12)


def test_iou_per_threshold_by_hand():
    # already min-max scaled: values 0, 0.25, 0.5, 1; the object is the 0.5 and 1 pixels
    scores = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
    mask = torch.tensor([[False, True], [True, False]])
    ious = iou_per_threshold(scores, mask)
    at = {round(float(t), 2): float(v) for t, v in zip(THRESHOLDS, ious)}
    assert at[0.0] == pytest.approx(2 / 4)  # everything predicted
    assert at[0.25] == pytest.approx(2 / 3)  # 0.25, 0.5, 1 predicted
    assert at[0.26] == pytest.approx(1.0) and at[0.5] == pytest.approx(1.0)
    assert at[0.51] == pytest.approx(1 / 2) and at[1.0] == pytest.approx(1 / 2)  # only the 1 pixel


def test_iou_per_threshold_matches_a_plain_loop():
    gen = torch.Generator().manual_seed(1)
    raw = torch.randn(13, 7, generator=gen) * 3 + 1  # min-max scaling happens inside
    mask = torch.rand(13, 7, generator=gen) < 0.4
    scaled = (raw - raw.min()) / (raw.max() - raw.min())
    ious = iou_per_threshold(raw, mask)
    for j, t in enumerate(THRESHOLDS.tolist()):
        pred = scaled.double() >= t
        union = (pred | mask).sum().item()
        expected = (pred & mask).sum().item() / union if union else 1.0
        assert ious[j].item() == pytest.approx(expected, abs=1e-12), t


def test_best_global_threshold_is_one_threshold_for_all_images():
    """Image A is best cut at 0.3, image B at 0.8; the global threshold maximises their mean."""
    a = torch.tensor([[0.0, 0.3, 0.35, 1.0]])
    mask_a = torch.tensor([[False, True, True, True]])  # perfect for t in (0, 0.3]
    b = torch.tensor([[0.0, 0.3, 0.8, 1.0]])
    mask_b = torch.tensor([[False, False, True, True]])  # perfect for t in (0.3, 0.8]
    empty = torch.zeros(1, 4, dtype=torch.bool)
    scores = score_segmentation([a, b, a], [mask_a, mask_b, empty])
    assert scores.images == 2 and scores.images_without_object == 1
    # at t in (0, 0.3]: A = 1, B = 2/3; at t in (0.3, 0.35]: A = 2/3, B = 1 -> both give 5/6; the first wins
    assert scores.miou == pytest.approx(5 / 6)
    assert scores.threshold == pytest.approx(0.01)
    assert scores.mean_ap == pytest.approx(1.0)


def test_centre_prior_scores_a_centred_disc_perfectly_and_a_corner_badly():
    side = 31
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    disc = (ys - 15) ** 2 + (xs - 15) ** 2 <= 36
    corner = (ys < 8) & (xs < 8)
    prior = centre_prior(1, side, side)[0]
    good = score_segmentation([prior], [disc])
    assert good.mean_ap == pytest.approx(1.0) and good.miou == pytest.approx(1.0)
    bad = score_segmentation([prior], [corner])
    assert bad.mean_ap < 0.3 and bad.miou < 0.3


def test_tally_refuses_a_set_without_objects():
    from cavkit.errors import UsageError

    tally = SegmentationTally()
    tally.add(torch.rand(4, 4), torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(UsageError, match="no image with a non-empty mask"):
        tally.scores()

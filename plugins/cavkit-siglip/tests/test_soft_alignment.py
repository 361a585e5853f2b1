"""The soft_alignment retrieval strategy on hand-built cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cavkit.errors import UsageError

from cavkit_siglip.configs import SoftAlignmentConfig
from cavkit_siglip.strategy import SoftAlignment, soft_alignment_similarity


def clips(n, k=8, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, k, d, generator=g), dim=-1)


def diagonal_mean(q, g):
    """Spec §8.2: mean over time-aligned frame pairs."""
    return torch.einsum("nkd,mkd->nm", q, g) / q.shape[1]


def r_at_1(sim):
    return (sim.argmax(dim=1) == torch.arange(len(sim))).float().mean().item()


@pytest.mark.parametrize("temperature", [0.0, 0.05, 1.0])
def test_window_zero_is_diagonal_mean(temperature):
    q, g = clips(5, seed=1), clips(7, seed=2)
    got = soft_alignment_similarity(q, g, window=0, temperature=temperature)
    torch.testing.assert_close(got, diagonal_mean(q, g))


def test_a_shifted_copy_retrieves_its_source():
    gallery = clips(32, k=8, seed=3)
    fresh = clips(32, k=1, seed=4)
    # Query i is gallery i one frame later: frames 1..7 of the source, then one new frame.
    query = torch.cat([gallery[:, 1:], fresh], dim=1)
    assert r_at_1(diagonal_mean(query, gallery)) < 0.5  # unrelated frames are compared
    for temperature in (0.0, 0.05):
        strategy = SoftAlignment(SoftAlignmentConfig(window=1, temperature=temperature))
        assert r_at_1(strategy(query, gallery)) == 1.0
        assert r_at_1(strategy(gallery, query)) == 1.0


def test_a_two_frame_shift_needs_window_two():
    gallery = clips(32, k=8, seed=5)
    query = torch.cat([gallery[:, 2:], clips(32, k=2, seed=6)], dim=1)
    assert r_at_1(soft_alignment_similarity(query, gallery, window=2, temperature=0.0)) == 1.0


def test_hand_computed_hard_alignment():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    q = torch.stack([e1, e2, e1])[None]  # [1,3,2]
    g = torch.stack([e2, e1, e2])[None]
    # window 1, max: query frame 0 (e1) sees g0,g1 = [0,1]; frame 1 (e2) sees g0..g2 = [1,0,1];
    # frame 2 (e1) sees g1,g2 = [1,0]; gallery frames see the same patterns of query frames.
    assert soft_alignment_similarity(q, g, window=1, temperature=0.0).item() == pytest.approx(1.0)
    # diagonal pairs are all orthogonal
    assert soft_alignment_similarity(q, g, window=0, temperature=0.0).item() == pytest.approx(0.0)
    # soft version: a window [1,0] scores softmax([1,0]/T)[0]; a window [1,0,1] scores 2 softmax([1,0,1]/T)[0]
    T = 0.5
    two = torch.softmax(torch.tensor([1.0, 0.0]) / T, 0)[0].item()
    three = 2 * torch.softmax(torch.tensor([1.0, 0.0, 1.0]) / T, 0)[0].item()
    want = (two + three + two) / 3  # the same per side, so the average of both sides too
    assert soft_alignment_similarity(q, g, window=1, temperature=T).item() == pytest.approx(want, rel=1e-6)


def test_hard_and_soft_limits():
    q, g = clips(4, seed=7), clips(5, seed=8)
    hard = soft_alignment_similarity(q, g, window=2, temperature=0.0)
    sharp = soft_alignment_similarity(q, g, window=2, temperature=1e-4)
    torch.testing.assert_close(sharp, hard, atol=1e-3, rtol=0)
    # A very soft match is the mean over each (edge-truncated) window.
    flat = soft_alignment_similarity(q, g, window=2, temperature=1e6)
    c = torch.einsum("nkd,mld->nmkl", q, g)
    k = q.shape[1]
    band = (torch.arange(k)[:, None] - torch.arange(k)[None, :]).abs() <= 2
    window_mean_q = (c * band).sum(-1) / band.sum(-1)
    window_mean_g = (c * band).sum(-2) / band.sum(-2)
    torch.testing.assert_close(flat, (window_mean_q.mean(-1) + window_mean_g.mean(-1)) / 2, atol=1e-5, rtol=0)


def test_both_directions_come_from_one_matrix():
    q, g = clips(6, seed=9), clips(4, seed=10)
    strategy = SoftAlignment(SoftAlignmentConfig(window=2, temperature=0.1))
    assert strategy.symmetric
    torch.testing.assert_close(strategy(q, g), strategy(g, q).T)


def test_chunking_does_not_change_the_result():
    q, g = clips(9, seed=11), clips(5, seed=12)
    whole = SoftAlignment(SoftAlignmentConfig(chunk_size=100))(q, g)
    torch.testing.assert_close(SoftAlignment(SoftAlignmentConfig(chunk_size=2))(q, g), whole)


def test_window_wider_than_the_clip_and_single_frames():
    q, g = clips(3, k=2, seed=13), clips(3, k=2, seed=14)
    torch.testing.assert_close(
        soft_alignment_similarity(q, g, window=5, temperature=0.0),
        soft_alignment_similarity(q, g, window=1, temperature=0.0),
    )
    single_q, single_g = clips(3, k=1, seed=15), clips(4, k=1, seed=16)
    torch.testing.assert_close(
        soft_alignment_similarity(single_q, single_g, window=2), single_q[:, 0] @ single_g[:, 0].T
    )


def test_mismatched_frame_counts_are_a_clear_error():
    with pytest.raises(UsageError, match="same K and D"):
        soft_alignment_similarity(clips(2, k=4), clips(2, k=5))

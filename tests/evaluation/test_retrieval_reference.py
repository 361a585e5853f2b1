"""Retrieval strategies and metrics against the published code's numbers (spec §8, quirk 16).

The fixture holds per-frame embeddings [60, 4, 16] for a plain set and a set with exact ties, and
the metrics the published ``compute_metrics(get_agg_sim_mat(...))`` gives for each strategy and
direction. ``upstream`` tie mode must reproduce them exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cavkit.evaluation.configs import MaxConfig
from cavkit.evaluation.retrieval import evaluate_retrieval, similarity_matrix
from cavkit.evaluation.strategies import DiagonalMax, DiagonalMean, Max, Mean, Pooled

FIXTURES = Path(__file__).resolve().parents[2] / "../shared/fixtures/reference"
STRATEGIES = {
    "pooled": Pooled(),
    "diagonal_mean": DiagonalMean(),
    "diagonal_max": DiagonalMax(),
    "mean": Mean(),
    "max": Max(),
}


@pytest.fixture(scope="module")
def reference():
    if not (FIXTURES / "retrieval.json").exists():
        pytest.skip(f"reference fixtures not found at {FIXTURES.resolve()}")
    from safetensors.torch import load_file

    return json.loads((FIXTURES / "retrieval.json").read_text()), load_file(str(FIXTURES / "retrieval.safetensors"))


@pytest.mark.parametrize("subset", ["plain", "ties"])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_upstream_mode_matches_published_metrics(reference, subset, name):
    expected, tensors = reference
    audio, visual = tensors[f"{subset}.audio"], tensors[f"{subset}.video"]
    results = evaluate_retrieval(audio, visual, STRATEGIES[name], tie_mode="upstream")
    for direction in ("audio", "video"):
        want = expected["results"][subset][name][direction]
        got = results[direction].metrics
        assert got["R1"] == want["R1"]
        assert got["R5"] == want["R5"]
        assert got["R10"] == want["R10"]
        assert got["MedR"] == want["MR"]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_streamed_path_gives_the_same_metrics(reference, name):
    """The bounded-memory path (matrix budget 0: per-direction query chunks) agrees with the matrix path."""
    _, tensors = reference
    audio, visual = tensors["ties.audio"], tensors["ties.video"]
    full = evaluate_retrieval(audio, visual, STRATEGIES[name], tie_mode="upstream", top_k=5)
    streamed = evaluate_retrieval(
        audio, visual, STRATEGIES[name], tie_mode="upstream", top_k=5, matrix_mb=0, chunk_mb=7 * 60 * 4 / 2**20
    )
    for direction in ("audio", "video"):
        assert streamed[direction].metrics == full[direction].metrics
        assert torch.equal(streamed[direction].ranks, full[direction].ranks)
        # GEMM blocking differs between chunk sizes: scores agree to rounding, not bit for bit
        torch.testing.assert_close(streamed[direction].top_scores, full[direction].top_scores)


def _loop_similarity(query: torch.Tensor, gallery: torch.Tensor, name: str) -> torch.Tensor:
    """The per-pair definition of spec §8.2 (float64), the ground truth for the fast forms."""
    q, g = query.double(), gallery.double()
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float64)
    for i in range(q.shape[0]):
        for j in range(g.shape[0]):
            pairs = q[i] @ g[j].T  # [K, K] frame-by-frame cosines
            if name == "diagonal_mean":
                out[i, j] = pairs.diagonal().mean()
            elif name == "diagonal_max":
                out[i, j] = pairs.diagonal().max()
            elif name == "mean":
                out[i, j] = pairs.mean()
            elif name == "max":
                out[i, j] = pairs.max()
            else:
                a, v = q[i].mean(0), g[j].mean(0)
                out[i, j] = a @ v / (a.norm() * v.norm())
    return out


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_fast_forms_equal_the_per_pair_definition(name):
    torch.manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(7, 5, 12), dim=-1)
    gallery = torch.nn.functional.normalize(torch.randn(9, 5, 12), dim=-1)
    fast = STRATEGIES[name](query, gallery)
    assert fast.shape == (7, 9)
    torch.testing.assert_close(fast.double(), _loop_similarity(query, gallery, name), atol=1e-6, rtol=1e-6)
    # symmetric strategies: swapping the sides transposes the matrix
    torch.testing.assert_close(STRATEGIES[name](gallery, query), fast.T, atol=1e-6, rtol=1e-6)


def test_max_strategy_chunks_give_identical_results():
    torch.manual_seed(1)
    query = torch.nn.functional.normalize(torch.randn(50, 4, 8), dim=-1)
    gallery = torch.nn.functional.normalize(torch.randn(40, 4, 8), dim=-1)
    tiny = Max(MaxConfig(chunk_mb=1))
    assert tiny.rows_per_chunk(4, 40, 4) > 0
    # force several chunks: at most 3 query clips per chunk
    tiny.rows_per_chunk = lambda *a, **k: 3  # type: ignore[method-assign]
    torch.testing.assert_close(tiny(query, gallery), Max()(query, gallery))


def test_similarity_matrix_chunks_rows():
    torch.manual_seed(2)
    query = torch.nn.functional.normalize(torch.randn(30, 3, 8), dim=-1)
    calls = []

    def recording(q, g):
        calls.append(q.shape[0])
        return DiagonalMean()(q, g)

    out = similarity_matrix(recording, query, query, chunk_mb=4 * 30 * 7 / 2**20)
    assert calls == [7, 7, 7, 7, 2]
    torch.testing.assert_close(out, DiagonalMean()(query, query))
    assert np.allclose(out.diagonal().numpy(), 1.0, atol=1e-6)


def test_evaluate_many_shares_diagonal_products_bit_identically(reference):
    from cavkit.evaluation.retrieval import evaluate_many
    from cavkit.evaluation.strategies import diagonal_mean_and_max

    _, tensors = reference
    audio, visual = tensors["ties.audio"], tensors["ties.video"]
    mean, best = diagonal_mean_and_max(audio, visual)
    assert torch.equal(mean, DiagonalMean()(audio, visual))
    assert torch.equal(best, DiagonalMax()(audio, visual))
    together = evaluate_many(audio, visual, STRATEGIES, tie_mode="upstream")
    for name, strategy in STRATEGIES.items():
        alone = evaluate_retrieval(audio, visual, strategy, tie_mode="upstream")
        for direction in ("audio", "video"):
            assert together[name][direction].metrics == alone[direction].metrics

"""Tie handling of the retrieval metrics on hand-built similarity matrices (spec §8.1, quirk 16)."""

from __future__ import annotations

import pytest
import torch

from cavkit.errors import DataError, UsageError
from cavkit.evaluation.metrics import ranks, retrieval_metrics
from cavkit.evaluation.retrieval import evaluate_retrieval, normalize_directions
from cavkit.evaluation.strategies import DiagonalMean


def test_no_ties_both_modes_agree():
    s = torch.tensor(
        [
            [0.9, 0.1, 0.2],  # rank 0
            [0.8, 0.5, 0.1],  # rank 1
            [0.7, 0.6, 0.3],  # rank 2
        ]
    )
    strict = retrieval_metrics(s, "strict")
    upstream = retrieval_metrics(s, "upstream")
    assert strict == upstream
    assert strict["R1"] == pytest.approx(1 / 3)
    assert strict["R5"] == 1.0
    assert strict["MedR"] == 2.0
    assert strict["MeanR"] == 2.0


def test_a_tie_counts_against_the_query_in_strict_mode():
    # query 0 ties with gallery item 1; query 1 is alone at the top; query 2 ties with both others
    s = torch.tensor(
        [
            [0.5, 0.5, 0.1],
            [0.1, 0.9, 0.2],
            [0.4, 0.4, 0.4],
        ]
    )
    assert ranks(*_counts(s), "strict").tolist() == [1, 0, 2]
    strict = retrieval_metrics(s, "strict")
    assert strict["R1"] == pytest.approx(1 / 3)
    assert strict["MedR"] == 2.0
    assert strict["MeanR"] == pytest.approx(2.0)


def test_upstream_mode_counts_every_tied_position_as_a_hit():
    s = torch.tensor(
        [
            [0.5, 0.5, 0.1],  # hits at positions 0 and 1
            [0.1, 0.9, 0.2],  # hit at 0
            [0.4, 0.4, 0.4],  # hits at 0, 1, 2
        ]
    )
    assert sorted(ranks(*_counts(s), "upstream").tolist()) == [0, 0, 0, 1, 1, 2]
    up = retrieval_metrics(s, "upstream")
    assert up["R1"] == pytest.approx(3 / 6)  # denominator is the number of hits, not of queries
    assert up["R5"] == 1.0
    assert up["MedR"] == 1.5  # numpy median of [0,0,0,1,1,2] is 0.5, plus 1
    assert up["queries"] == 3
    # the same matrix is stricter in strict mode
    assert retrieval_metrics(s, "strict")["R1"] < up["R1"]


def test_upstream_mode_ties_below_the_top():
    # query 0: two items above, then a 3-way tie including itself -> positions 2, 3, 4
    s = torch.tensor([[0.2, 0.9, 0.8, 0.2, 0.2, 0.0]] + [[0.0] * 6] * 0)
    s = torch.cat([s, torch.eye(6)[1:]], dim=0)
    positions = ranks(*_counts(s), "upstream").tolist()
    assert positions[:3] == [2, 3, 4]
    assert ranks(*_counts(s), "strict").tolist()[0] == 4


def test_tied_embeddings_end_to_end():
    """Clips 1 and 2 share clip 0's visual embedding: audio->visual rows 0..2 tie, visual->audio do not."""
    torch.manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(6, 2, 4), dim=-1)
    visual = audio.clone()
    visual[1] = visual[0]
    visual[2] = visual[0]
    s = DiagonalMean()(audio, visual)
    greater, equal = _counts(s)
    assert equal.tolist() == [3, 3, 3, 1, 1, 1]  # the three identical columns tie in rows 0..2
    res = evaluate_retrieval(audio, visual, DiagonalMean(), tie_mode="strict")
    assert torch.equal(res["audio"].ranks, greater + equal - 1)
    assert res["audio"].ranks[:3].min() >= 2  # each tied row has 2 equal rivals counted against it
    # upstream: 3 hits for each tied row, 1 for the others -> 12 positions
    assert ranks(greater, equal, "upstream").size == 12
    # visual->audio: rows 0..2 are identical queries but each has a distinct true match: no ties
    assert _counts(s.T)[1].tolist() == [1] * 6


def test_non_finite_similarity_is_an_error():
    s = torch.eye(3)
    s[1, 2] = float("nan")
    with pytest.raises(DataError, match="query 1"):
        retrieval_metrics(s)


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="pair up"):
        evaluate_retrieval(torch.zeros(3, 1, 4), torch.zeros(2, 1, 4), DiagonalMean())
    with pytest.raises(UsageError, match="tie mode"):
        evaluate_retrieval(torch.zeros(3, 1, 4), torch.zeros(3, 1, 4), DiagonalMean(), tie_mode="loose")
    with pytest.raises(UsageError, match="direction"):
        normalize_directions("sideways")
    assert normalize_directions("both") == ("audio", "video")
    assert normalize_directions("v2a,a2v") == ("video", "audio")


def _counts(s):
    from cavkit.evaluation.metrics import count_against_diagonal

    return count_against_diagonal(s)


def _published_compute_metrics(x):
    """The published ``compute_metrics`` (spec §8.1), written out in numpy for comparison."""
    import numpy as np

    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    ind = np.where(sx - d == 0)[1]
    return {
        "R1": float(np.sum(ind == 0)) / len(ind),
        "R5": float(np.sum(ind < 5)) / len(ind),
        "R10": float(np.sum(ind < 10)) / len(ind),
        "MR": np.median(ind) + 1,
    }


@pytest.mark.parametrize("levels", [3, 8, 1000])
def test_upstream_mode_equals_the_published_function_on_matrices_full_of_ties(levels):
    g = torch.Generator().manual_seed(levels)
    for n in (7, 30):
        s = torch.randint(0, levels, (n, n), generator=g).float() / levels  # few levels: many ties
        want = _published_compute_metrics(s.numpy())
        got = retrieval_metrics(s, "upstream")
        assert (got["R1"], got["R5"], got["R10"], got["MedR"]) == (want["R1"], want["R5"], want["R10"], want["MR"])

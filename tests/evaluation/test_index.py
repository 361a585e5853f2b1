"""Index-based retrieval (FAISS, optional): agrees with the exact path where it claims to be exact."""

from __future__ import annotations

import pytest
import torch

from cavkit.errors import UsageError
from cavkit.evaluation.index import evaluate_retrieval_index
from cavkit.evaluation.retrieval import evaluate_retrieval
from cavkit.evaluation.strategies import DiagonalMax, DiagonalMean, Mean, Pooled

pytest.importorskip("faiss", reason="faiss is an optional dependency (pip install faiss-cpu)")


def _paired(n: int, k: int, d: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    audio = torch.nn.functional.normalize(torch.randn(n, k, d, generator=g), dim=-1)
    visual = torch.nn.functional.normalize(audio + noise * torch.randn(n, k, d, generator=g), dim=-1)
    return audio, visual


@pytest.mark.parametrize("strategy", [Pooled(), Mean(), DiagonalMean()], ids=repr)
def test_flat_index_recalls_equal_exact_recalls(strategy):
    audio, visual = _paired(200, 4, 16, 1.0, seed=0)
    exact = evaluate_retrieval(audio, visual, strategy)
    indexed = evaluate_retrieval_index(audio, visual, strategy, top_k=50)
    for direction in ("audio", "video"):
        for key in ("R1", "R5", "R10"):
            assert indexed[direction].metrics[key] == pytest.approx(exact[direction].metrics[key])
        assert indexed[direction].metrics["MedR"] == exact[direction].metrics["MedR"]
        assert 0.0 < exact[direction].metrics["R1"] < 1.0  # a set where the numbers mean something


def test_median_beyond_the_list_is_not_invented():
    audio, visual = _paired(100, 1, 8, 50.0, seed=1)  # nearly unrelated sides: median rank ~ 50
    indexed = evaluate_retrieval_index(audio, visual, Pooled(), top_k=10)
    assert indexed["audio"].metrics["MedR"] is None


def test_strategies_without_a_vector_form_are_refused():
    audio, visual = _paired(10, 2, 4, 0.1, seed=2)
    with pytest.raises(UsageError, match="single-vector"):
        evaluate_retrieval_index(audio, visual, DiagonalMax())


def test_cli_index_flag(tmp_path):
    import json

    from cavkit.evaluation.features import Features
    from cavkit.testing import run_cli

    audio, visual = _paired(50, 3, 8, 0.5, seed=3)
    feats = tmp_path / "f.safetensors"
    Features(audio, visual, None, [str(i) for i in range(50)]).save(str(feats))
    out = tmp_path / "r.json"
    result = run_cli(["eval", "retrieval", "--features", str(feats), "--index", "--strategy", "mean", "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["tie_mode"] == "index"
    exact = evaluate_retrieval(audio, visual, Mean())
    assert data["results"]["mean"]["audio"]["R5"] == pytest.approx(exact["audio"].metrics["R5"])
    refused = run_cli(["eval", "retrieval", "--features", str(feats), "--index", "--strategy", "max"])
    assert refused.exit_code == 2 and "single-vector" in refused.stderr

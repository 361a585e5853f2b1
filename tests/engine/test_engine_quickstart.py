"""recipes/quickstart.yaml: trains end to end and reports retrieval at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cavkit.engine.dist import DistInfo
from cavkit.engine.trainer import Trainer
from cavkit.recipe import load_recipe
from cavkit.testing import plugin_host

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


def run(tmp_path: Path, *overrides: str) -> dict:
    recipe = load_recipe(str(QUICKSTART), ["trainer.progress_bar=false", *overrides], host=plugin_host())
    return Trainer(recipe, run_dir=str(tmp_path / "run"), dist=DistInfo(), argv=["test"]).fit()


def test_quickstart_pipeline_reports_retrieval(tmp_path: Path) -> None:
    result = run(tmp_path, "trainer.max_steps=2", "trainer.batch_size=8", "data.train.num_clips=16", "data.eval.num_clips=12")
    metrics = result["retrieval"]
    assert metrics["eval/retrieval/chance/R@1"] == pytest.approx(100 / 12)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = next(x for x in lines if x["kind"] == "eval" and "eval/retrieval/diagonal_mean/visual_to_audio/R@1" in x)
    for direction in ("audio_to_visual", "visual_to_audio"):
        r1 = metrics[f"eval/retrieval/diagonal_mean/{direction}/R@1"]
        # a percentage of 12 queries: a whole number of them found at rank 1, and what the run logged
        assert r1 * 12 / 100 == pytest.approx(round(r1 * 12 / 100)) and 0 <= round(r1 * 12 / 100) <= 12
        assert logged[f"eval/retrieval/diagonal_mean/{direction}/R@1"] == pytest.approx(r1)


@pytest.mark.slow
def test_quickstart_learns_retrieval_well_above_chance(tmp_path: Path) -> None:
    """The full quickstart (a few minutes on 2 cores): R@1 several times chance in both directions."""
    metrics = run(tmp_path)["retrieval"]
    chance = metrics["eval/retrieval/chance/R@1"]
    assert metrics["eval/retrieval/diagonal_mean/visual_to_audio/R@1"] > 10 * chance
    assert metrics["eval/retrieval/diagonal_mean/audio_to_visual/R@1"] > 4 * chance

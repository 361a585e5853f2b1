"""Tests of the example plugin, written the way a plugin author would, with cavkit.testing."""

import pytest
import torch
import torch.nn.functional as F

from cavkit.testing import check_component, plugin_host, run_cli

pytest.importorskip("cavkit_example", reason="cavkit-example is not installed: pip install ./plugins/cavkit-example")
import cavkit_example.plugin  # noqa: E402
from cavkit_example.smooth_max import SmoothMax  # noqa: E402


@pytest.fixture(scope="module")
def host():
    """cavkit's built-ins plus this plugin only (installed plugins do not leak in)."""
    return plugin_host(cavkit_example.plugin)


def test_smooth_max_meets_the_retrieval_contract(host):
    result = check_component("retrieval_strategy", "smooth_max", host=host)
    assert result.output.shape == (3, 5)


@pytest.mark.parametrize("pairs", ["all", "diagonal"])
def test_smooth_max_lies_between_mean_and_max(pairs):
    gen = torch.Generator().manual_seed(1)
    # float64: at tau = 1e4 the log-sum-exp minus log P cancels to ~1e-4 of its size
    q = F.normalize(torch.randn(4, 3, 8, generator=gen, dtype=torch.float64), dim=-1)
    g = F.normalize(torch.randn(6, 3, 8, generator=gen, dtype=torch.float64), dim=-1)
    cos = torch.einsum("nkd,mjd->nmkj", q, g)
    if pairs == "diagonal":
        cos = torch.diagonal(cos, dim1=2, dim2=3)
    cos = cos.flatten(2)
    sharp = SmoothMax(temperature=1e-4, pairs=pairs)(q, g)
    soft = SmoothMax(temperature=1e4, pairs=pairs)(q, g)
    middle = SmoothMax(temperature=0.1, pairs=pairs)(q, g)
    torch.testing.assert_close(sharp, cos.amax(-1), atol=2e-3, rtol=0)
    torch.testing.assert_close(soft, cos.mean(-1), atol=1e-4, rtol=0)
    assert torch.all(middle <= cos.amax(-1) + 1e-6) and torch.all(middle >= cos.mean(-1) - 1e-6)


def test_chunking_does_not_change_scores():
    gen = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(7, 2, 4, generator=gen), dim=-1)
    g = F.normalize(torch.randn(3, 2, 4, generator=gen), dim=-1)
    torch.testing.assert_close(SmoothMax(chunk_size=2)(q, g), SmoothMax(chunk_size=100)(q, g))


def test_parameters_are_validated_like_a_recipe(host):
    with pytest.raises(AssertionError, match="temperature: must be >= 0.0001"):
        check_component("retrieval_strategy", "smooth_max", host=host, params={"temperature": 0})
    with pytest.raises(AssertionError, match="did you mean 'temperature'"):
        check_component("retrieval_strategy", "smooth_max", host=host, params={"temprature": 0.1})


def test_cli_lists_and_describes_the_component(host):
    listed = run_cli(["components", "retrieval_strategy"], host=host)
    assert listed.exit_code == 0, listed.stderr
    assert "cavkit-example/smooth_max" in listed.stdout
    shown = run_cli(["components", "show", "retrieval_strategy", "smooth_max"], host=host)
    assert shown.exit_code == 0, shown.stderr
    assert "temperature: float = 0.05" in shown.stdout

"""The plugin as cavkit sees it: contract checks with cavkit.testing, discovery through the
installed entry point, and the error a recipe naming these components gives without the plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
import torch

from cavkit.errors import RecipeError
from cavkit.recipe import load_recipe
from cavkit.testing import check_component, plugin_host, run_cli, synthetic_model_output

import cavkit_siglip.plugin

RECIPE = """\
cavkit: 1
requires: ["cavkit-siglip>=0.1"]
model: {type: cav_mae}
objectives:
  - {type: mae, weight: 1.0}
  - {type: siglip, weight: 0.01, negatives: global}
retrieval: {type: soft_alignment, window: 2}
"""


@pytest.fixture(scope="module")
def host():
    """cavkit's built-ins plus this plugin only (other installed plugins do not leak in)."""
    return plugin_host(cavkit_siglip.plugin)


@pytest.mark.parametrize("params", [{}, {"features": "pooled"}, {"features": "global", "learnable": False}])
def test_siglip_meets_the_objective_contract(host, params):
    result = check_component("objective", "siglip", host=host, params=params)
    assert result.spec.qualified_id == "cavkit-siglip/siglip"
    assert set(result.output.logs) == {"loss", "scale", "bias", "c_acc", "pos_prob"}


def test_siglip_parameters_get_gradients_through_the_check(host):
    result = check_component("objective", "siglip", host=host)
    assert result.component.log_scale.grad is not None and result.component.bias.grad is not None


def test_siglip_on_a_cav_mae_output_without_global_tokens(host):
    batch, output = synthetic_model_output()
    output.audio_global = output.visual_global = None
    check_component("objective", "siglip", host=host, inputs={"batch": batch, "output": output})


def test_soft_alignment_meets_the_retrieval_contract(host):
    result = check_component("retrieval_strategy", "soft_alignment", host=host, params={"window": 2})
    assert result.output.shape == (3, 5)
    assert result.component.symmetric


def test_parameters_are_validated_like_a_recipe(host):
    with pytest.raises(AssertionError, match="window: must be >= 0"):
        check_component("retrieval_strategy", "soft_alignment", host=host, params={"window": -1})
    with pytest.raises(AssertionError, match="negatives: must be one of 'local', 'global'"):
        check_component("objective", "siglip", host=host, params={"negatives": "all"})


def test_cli_describes_the_components(host):
    shown = run_cli(["components", "show", "objective", "siglip"], host=host)
    assert shown.exit_code == 0, shown.stderr
    assert "scale_init: float = 10.0" in shown.stdout and "bias_init: float = -10.0" in shown.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAVKIT_")}
    env.update(extra)
    return env


def test_installed_entry_point_is_discovered():
    eps = [ep for ep in metadata.entry_points(group="cavkit") if ep.value == "cavkit_siglip.plugin"]
    assert eps, "cavkit-siglip is not installed: pip install plugins/cavkit-siglip"
    listed = subprocess.run(
        [sys.executable, "-m", "cavkit", "plugins", "--json"], capture_output=True, text=True, env=_clean_env()
    )
    assert listed.returncode == 0, listed.stderr
    plugins = {p["dist"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["cavkit-siglip"]["components"] == [
        "objective cavkit-siglip/siglip",
        "retrieval_strategy cavkit-siglip/soft_alignment",
    ]


def test_recipe_validates_with_the_plugin(host, tmp_path):
    path = tmp_path / "siglip.yaml"
    path.write_text(RECIPE)
    recipe = load_recipe(str(path), host=host)
    assert recipe.objectives[1].spec.qualified_id == "cavkit-siglip/siglip"
    assert recipe.retrieval.config.window == 2


def test_recipe_without_the_plugin_installed_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "siglip.yaml"
    path.write_text(RECIPE)
    real_version = metadata.version

    def version(name):  # as if `pip uninstall cavkit-siglip` had run
        if name == "cavkit-siglip":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path), host=plugin_host())
    message = str(error.value)
    assert "requires.0: 'cavkit-siglip' is not installed; install it with `pip install 'cavkit-siglip>=0.1'`" in message
    assert "objectives.1.type: unknown objective 'siglip'" in message
    assert "retrieval.type: unknown retrieval_strategy 'soft_alignment'" in message


def test_recipe_with_the_plugin_blocked_fails_from_the_command_line(tmp_path):
    path = tmp_path / "siglip.yaml"
    path.write_text(RECIPE)
    checked = subprocess.run(
        [sys.executable, "-m", "cavkit", "recipe", "check", str(path)],
        capture_output=True, text=True, env=_clean_env(CAVKIT_BLOCK_PLUGINS="siglip"),
    )
    assert checked.returncode == 2
    assert "Traceback" not in checked.stderr
    assert "cavkit-siglip 0.1.0 is installed but its cavkit plugin is not loaded" in checked.stderr
    assert "unknown objective 'siglip'" in checked.stderr


def test_eval_retrieval_applies_the_recipes_strategy_parameters(host, tmp_path):
    """`cavkit eval retrieval` on saved features: soft_alignment with window 0 scores like diagonal_mean."""
    import torch.nn.functional as F
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    audio = F.normalize(torch.randn(12, 4, 8, generator=gen), dim=-1)
    visual = F.normalize(audio + 0.8 * torch.randn(12, 4, 8, generator=gen), dim=-1)
    features = tmp_path / "features.safetensors"
    save_file({"audio": audio, "visual": visual}, str(features),
              metadata={"clip_ids": json.dumps([str(i) for i in range(12)]), "embedding": "global", "format": "cavkit-features/1"})
    recipe = tmp_path / "siglip.yaml"
    recipe.write_text(RECIPE)

    def table(*extra):
        result = run_cli(["eval", "retrieval", str(recipe), "--features", str(features), *extra], host=host)
        assert result.exit_code == 0, result.stderr
        return {tuple(line.split()[:2]): line.split()[2:] for line in result.stdout.splitlines()
                if line.startswith(("soft_alignment", "diagonal_mean"))}

    rows = table("--strategy", "soft_alignment,diagonal_mean", "--set", "retrieval.window=0")
    for direction in ("audio->visual", "visual->audio"):
        assert rows[("soft_alignment", direction)] == rows[("diagonal_mean", direction)]
    widened = table("--strategy", "soft_alignment")  # the recipe's window: 2
    assert widened[("soft_alignment", "audio->visual")] != rows[("soft_alignment", "audio->visual")]

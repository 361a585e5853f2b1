"""The plugin guide stays true: every hook documented with its signature, the worked example is the
real plugin's files, the objective example runs, and CI runs the README's test command."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import attrs
import pytest
import yaml

from cavkit import hookimpl, hookspecs
from cavkit.config import at_least, param
from cavkit.testing import check_component, plugin_host

REPO = Path(__file__).resolve().parents[2]
GUIDE = (REPO / "docs" / "plugins.md").read_text()
EXAMPLE = REPO / "plugins" / "cavkit-example"


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_every_hook_is_documented_with_its_signature():
    hooks = [(n, f) for n, f in vars(hookspecs).items() if n.startswith("cavkit_") and callable(f)]
    assert {n for n, _ in hooks} >= {"cavkit_register_components", "cavkit_register_commands"}
    for name, func in hooks:
        args = ", ".join(inspect.signature(func).parameters)
        assert f"### `{name}({args})`" in GUIDE, f"docs/plugins.md lacks a section for {name}({args})"
        assert func.__doc__, f"hookspec {name} has no docstring"


@pytest.mark.parametrize("relpath", ["pyproject.toml", "src/cavkit_example/plugin.py",
                                     "src/cavkit_example/configs.py", "src/cavkit_example/smooth_max.py"])
def test_worked_example_is_the_example_plugin_verbatim(relpath):
    text = (EXAMPLE / relpath).read_text()
    blocks = code_blocks(GUIDE, "toml") + code_blocks(GUIDE, "python")
    assert text in blocks, f"docs/plugins.md shows a {relpath} that differs from plugins/cavkit-example/{relpath}"


def test_objective_example_in_the_guide_runs():
    pytest.importorskip("torch")
    (snippet,) = [b for b in code_blocks(GUIDE, "python") if "class CosineAlignment" in b]
    module = types.ModuleType("guide_objective")
    exec(compile(snippet, "docs/plugins.md", "exec"), module.__dict__)

    @attrs.frozen(kw_only=True)
    class CosineAlignmentConfig:
        scale: float = param(1.0, help="loss multiplier", validator=at_least(0.0))

    class GuidePlugin:
        @hookimpl
        def cavkit_register_components(self, registry):
            registry.add("objective", "cosine_alignment", module.build_cosine_alignment, CosineAlignmentConfig)

    result = check_component("objective", "cosine_alignment", host=plugin_host(GuidePlugin()), params={"scale": 2.0})
    # the guide's loss: scale * (1 - cos), with scale 2 from params and the mean cosine it logs
    assert result.output.loss.item() == pytest.approx(2.0 * (1 - result.output.logs["cosine"].item()))


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up and run the tests", 1)[1]
    test_block = code_blocks(section, "bash")[0].strip().splitlines()
    assert len(test_block) == 1, "the README's test command is one line a user can paste"
    steps = test_block[0].split(" && ")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert steps[-1] == ci[-1] == "python -m pytest"
    assert "pip install torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0" in steps
    ci_installs = [line.strip() for line in ci if line.strip().startswith("python -m pip install --quiet")]
    assert [step.replace("pip install", "python -m pip install --quiet") for step in steps[2:4]] == ci_installs[1:3]


def test_readme_quickstart_is_one_line_that_sets_up_trains_and_evaluates():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up and run the quickstart", 1)[1].split("## ", 1)[0]
    block = code_blocks(section, "bash")[0].strip().splitlines()
    assert len(block) == 1 and block[0].startswith("python3 -m venv .venv && ")
    assert block[0].endswith(" && cavkit train recipes/quickstart.yaml")
    assert (REPO / "recipes" / "quickstart.yaml").is_file()


def test_readme_recipe_example_is_valid_and_its_error_example_is_real(tmp_path):
    from cavkit.testing import run_cli

    readme = (REPO / "README.md").read_text()
    example, append = code_blocks(readme, "yaml")
    recipe = tmp_path / "example.yaml"
    recipe.write_text("\n".join(line for line in example.splitlines() if not line.startswith("base:")))
    result = run_cli(["recipe", "check", str(recipe)])
    assert result.exit_code == 0, result.stderr

    # the append example, on top of the first one: its objective comes after the parent's two
    child = tmp_path / "child.yaml"
    child.write_text(re.sub(r"^base: .*$", "base: example.yaml", append, flags=re.M))
    shown = run_cli(["recipe", "show", str(child)])
    assert shown.exit_code == 0, shown.stderr
    objectives = yaml.safe_load(shown.stdout)["objectives"]
    assert [o["type"] for o in objectives] == ["mae", "infonce", "infonce"] and objectives[2]["name"] == "both_ways"

    quoted = re.search(r"\(`(objectives\.1\.temprature: .*?)`\)", readme).group(1)
    broken = run_cli(["recipe", "check", str(recipe), "--set", "objectives.1.temprature=0.1"])
    assert broken.exit_code == 2 and f"  - {quoted}\n" in broken.stderr, broken.stderr

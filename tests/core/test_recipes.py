"""Recipe validation through the real CLI: every bad-input case of the issue exits 2 with the file
and key path and no traceback; ``--set`` overrides and ``base:`` recipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cavkit.recipe import load_recipe
from cavkit.testing import run_cli

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
cavkit: 1
model:
  type: toy_model
  width: 8
  encoder: {type: toy_encoder, depth: 3}
objectives:
  - {type: toy_loss, weight: 1.0}
  - {type: toy_loss, name: sharp, weight: 0.01, temperature: 0.01}
retrieval: {type: toy_retrieval}
trainer: {batch_size: 4, optimizer: {lr: 1e-4}}
"""

# (case, recipe text, expected key path, expected message fragment)
BAD = [
    ("unknown key", GOOD.replace("batch_size: 4", "batch_sise: 4"),
     "trainer.batch_sise", "unknown key 'batch_sise'; did you mean 'batch_size'?"),
    ("wrong type", GOOD.replace("width: 8", "width: eight"),
     "model.width", "expected an integer, got str 'eight'"),
    ("out of range", GOOD.replace("depth: 3", "depth: 99"),
     "model.encoder.depth", "must be between 1 and 24, got 99"),
    ("unknown component", GOOD.replace("type: toy_model", "type: toy_modle"),
     "model.type", "unknown model 'toy_modle'; did you mean 'toy_model'?"),
    ("yaml syntax error", GOOD.replace("retrieval: {type: toy_retrieval}", "retrieval: {type: toy_retrieval"),
     "", "YAML syntax error at line"),
    ("empty file", "", "", "the recipe file is empty"),
    ("list where a mapping belongs", GOOD.replace("trainer: {batch_size: 4, optimizer: {lr: 1e-4}}", "trainer: [4, 1e-4]"),
     "trainer", "expected a mapping, got a list"),
    ("component of the wrong kind", GOOD.replace("{type: toy_encoder, depth: 3}", "{type: toy_loss}"),
     "model.encoder.type", "'toy_loss' is an objective, but an encoder is expected here"),
    ("mapping where a list belongs", GOOD.replace("objectives:\n", "objectives: {type: toy_loss}\nx_objectives:\n"),
     "objectives", "expected a list of objective nodes, got a mapping"),
    ("choice not allowed", GOOD.replace("width: 8", "width: 8\n  mode: stereo"),
     "model.mode", "must be one of 'audio', 'video', got 'stereo'"),
    ("whole recipe is a list", "- model\n- trainer\n", "", "a recipe must be a mapping of sections, got a list"),
    ("missing required section", "trainer: {batch_size: 2}\n", "model", "required key is missing"),
]


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_recipe_passes(toy_host, tmp_path):
    path = write(tmp_path, GOOD)
    result = run_cli(["recipe", "check", str(path)], host=toy_host)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{path}: ok\n"


@pytest.mark.parametrize(("case", "text", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_recipe_exits_2_naming_file_and_key(toy_host, tmp_path, case, text, key, fragment):
    path = write(tmp_path, text)
    result = run_cli(["recipe", "check", str(path)], host=toy_host)
    assert result.exit_code == 2, (case, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {path}: ")
    expected = f"  - {key}: {fragment}" if key else f"  - {fragment}"
    assert expected in result.stderr, result.stderr


def test_missing_file_exits_2(toy_host, tmp_path):
    path = tmp_path / "nowhere.yaml"
    result = run_cli(["recipe", "check", str(path)], host=toy_host)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {path}: recipe file not found\n"


def test_every_problem_is_reported_at_once(toy_host, tmp_path):
    text = GOOD.replace("batch_size: 4", "batch_size: 0, epochs: x").replace("depth: 3", "depht: 3")
    text = text.replace("temperature: 0.01", "temperature: -1").replace("weight: 1.0", "weight: heavy")
    result = run_cli(["recipe", "check", str(write(tmp_path, text))], host=toy_host)
    assert result.exit_code == 2
    assert "5 problems in recipe" in result.stderr
    for line in (
        "  - model.encoder.depht: unknown key 'depht'; did you mean 'depth'?",
        "  - objectives.0.weight: expected a number, got str 'heavy'",
        "  - objectives.1.temperature: must be >= 0.0, got -1.0",
        "  - trainer.batch_size: must be >= 1, got 0",
        "  - trainer.epochs: expected an integer, got str 'x'",
    ):
        assert line in result.stderr


def test_floats_in_exponent_notation_are_numbers(toy_host, tmp_path):
    recipe = load_recipe(str(write(tmp_path, GOOD)), host=toy_host)
    assert recipe.trainer.optimizer.lr == pytest.approx(1e-4)
    assert recipe.objectives[1].label == "sharp" and recipe.objectives[1].weight == 0.01
    assert recipe.model.config.encoder.config.depth == 3


def test_set_overrides_are_applied_and_validated(toy_host, tmp_path):
    path = str(write(tmp_path, GOOD))
    recipe = load_recipe(path, ["trainer.optimizer.lr=3e-5", "model.encoder.depth=5", "objectives.1.weight=0.5",
                                "retrieval={type: toy_retrieval}", "seed=7"], host=toy_host)
    assert recipe.trainer.optimizer.lr == pytest.approx(3e-5)
    assert recipe.model.config.encoder.config.depth == 5
    assert recipe.objectives[1].weight == 0.5
    assert recipe.seed == 7

    bad = run_cli(["recipe", "check", path, "--set", "trainer.optimizer.lrr=1", "--set", "model.encoder.depth=0"],
                  host=toy_host)
    assert bad.exit_code == 2
    assert "  - trainer.optimizer.lrr: unknown key 'lrr'; did you mean 'lr'?" in bad.stderr
    assert "  - model.encoder.depth: must be between 1 and 24, got 0" in bad.stderr

    for override, message in (
        ("no_equals_sign", "--set: 'no_equals_sign' must look like key.path=value"),
        ("objectives.5.weight=1", "objectives.5: --set: no list item '5' here (2 items)"),
        ("trainer.batch_size.inner=1", "trainer.batch_size.inner: --set: cannot set a key inside a scalar value"),
    ):
        result = run_cli(["recipe", "check", path, "--set", override], host=toy_host)
        assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_show_prints_the_resolved_recipe_with_defaults(toy_host, tmp_path):
    path = str(write(tmp_path, GOOD))
    result = run_cli(["recipe", "show", path, "--set", "model.mode=video"], host=toy_host)
    assert result.exit_code == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["model"] == {"type": "cavkit-toy/toy_model", "width": 8, "mode": "video",
                              "encoder": {"type": "cavkit-toy/toy_encoder", "depth": 3}}
    assert shown["objectives"][1] == {"type": "cavkit-toy/toy_loss", "name": "sharp", "weight": 0.01, "temperature": 0.01}
    assert shown["trainer"]["optimizer"]["lr"] == pytest.approx(1e-4)
    assert "epochs" in shown["trainer"]  # defaults are filled in
    # the resolved recipe is itself a valid recipe that resolves to the same thing
    again = run_cli(["recipe", "show", str(write(tmp_path, result.stdout, "resolved.yaml"))], host=toy_host)
    assert again.exit_code == 0 and yaml.safe_load(again.stdout) == shown


def test_base_recipe_is_merged_and_a_changed_type_replaces_the_node(toy_host, tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", GOOD, "parent.yaml")
    child = write(tmp_path, """\
base: base/parent.yaml
model:
  encoder: {depth: 6}
objectives:
  - {type: toy_loss}
trainer: {optimizer: {lr: 2e-4}}
""", "child.yaml")
    recipe = load_recipe(str(child), host=toy_host)
    assert recipe.model.config.width == 8  # kept from the base
    assert recipe.model.config.encoder.config.depth == 6  # merged key by key
    assert len(recipe.objectives) == 1  # lists are replaced
    assert recipe.trainer.batch_size == 4 and recipe.trainer.optimizer.lr == pytest.approx(2e-4)

    replaced = write(tmp_path, "base: base/parent.yaml\nmodel: {encoder: {type: toy_encoder_b}}\n", "replace.yaml")
    encoder = load_recipe(str(replaced), host=toy_host).model.config.encoder
    assert encoder.type == "toy_encoder_b" and encoder.config.depth == 2  # another type: replaced whole


def test_a_plus_key_appends_to_the_inherited_list(toy_host, tmp_path):
    """`objectives+:` in a child (base resolved from the child's own folder) and `--set objectives+=`."""
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", GOOD, "parent.yaml")
    child = write(tmp_path, "base: base/parent.yaml\nobjectives+:\n  - {type: toy_loss, name: extra, weight: 0.5}\n",
                  "child.yaml")
    recipe = load_recipe(str(child), host=toy_host)
    assert [(o.label, o.weight) for o in recipe.objectives] == [(None, 1.0), ("sharp", 0.01), ("extra", 0.5)]
    more = load_recipe(str(child), ["objectives+={type: toy_loss, name: more}"], host=toy_host)
    assert [o.label for o in more.objectives] == [None, "sharp", "extra", "more"]
    # without a parent, `objectives+:` is just the list
    alone = write(tmp_path, GOOD.replace("objectives:", "objectives+:"), "alone.yaml")
    assert len(load_recipe(str(alone), host=toy_host).objectives) == 2


def test_appending_to_something_that_is_not_a_list_is_one_clear_problem(toy_host, tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", GOOD, "parent.yaml")
    child = write(tmp_path, "base: base/parent.yaml\ntrainer+: [1]\n", "child.yaml")
    result = run_cli(["recipe", "check", str(child)], host=toy_host)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "  - trainer+: 'trainer' is not a list here, so nothing can be appended to it" in result.stderr
    result = run_cli(["recipe", "check", str(child).replace("child", "parent").replace(str(tmp_path), str(tmp_path / "base")),
                      "--set", "trainer.batch_size+=3"], host=toy_host)
    assert result.exit_code == 2
    assert "trainer.batch_size+: --set: 'batch_size' is not a list here" in result.stderr


def test_base_problems_name_the_file_and_the_base_key(toy_host, tmp_path):
    missing = write(tmp_path, "base: nope.yaml\n", "a.yaml")
    result = run_cli(["recipe", "check", str(missing)], host=toy_host)
    assert result.exit_code == 2
    assert f"Error: {missing}: 1 problem in recipe\n  - base: {tmp_path / 'nope.yaml'}: recipe file not found" in result.stderr

    write(tmp_path, "base: c.yaml\n", "b.yaml")
    write(tmp_path, "base: b.yaml\n", "c.yaml")
    result = run_cli(["recipe", "check", str(tmp_path / "b.yaml")], host=toy_host)
    assert result.exit_code == 2 and "base recipes form a cycle" in result.stderr

    bad_parent = write(tmp_path, "model: [oops\n", "bad_parent.yaml")
    result = run_cli(["recipe", "check", str(write(tmp_path, "base: bad_parent.yaml\n", "d.yaml"))], host=toy_host)
    assert result.exit_code == 2 and f"Error: {bad_parent}: 1 problem in recipe" in result.stderr


def test_requires_names_missing_distributions(toy_host, tmp_path):
    text = "requires: [cavkit-not-installed>=1, 'cavkit>=99', 'not a requirement!!']\n" + GOOD
    result = run_cli(["recipe", "check", str(write(tmp_path, text))], host=toy_host)
    assert result.exit_code == 2
    assert "requires.0: 'cavkit-not-installed' is not installed" in result.stderr
    assert "requires.1: cavkit " in result.stderr and "'cavkit>=99' is required" in result.stderr
    assert "requires.2: invalid requirement" in result.stderr


def test_recipes_are_read_through_fsspec(toy_host):
    import fsspec

    with fsspec.open("memory://recipes/parent.yaml", "w") as fh:
        fh.write(GOOD)
    with fsspec.open("memory://recipes/child.yaml", "w") as fh:
        fh.write("base: parent.yaml\nseed: 3\n")
    recipe = load_recipe("memory://recipes/child.yaml", host=toy_host)
    assert recipe.seed == 3 and recipe.model.config.width == 8
    result = run_cli(["recipe", "check", "nosuchprotocol://x.yaml"], host=toy_host)
    assert result.exit_code == 2 and "nosuchprotocol://x.yaml: cannot open the recipe" in result.stderr


def _cavkit(args, site_root, extra_env=None):
    env = dict(os.environ, PYTHONPATH=str(site_root), **(extra_env or {}))
    env.pop("CAVKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "cavkit", *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_console_command_exits_2_without_traceback_and_debug_shows_it(site, tmp_path):
    site.add_toy()  # discovered through its entry point in the child process
    path = write(tmp_path, GOOD.replace("depth: 3", "depth: 99"))
    result = _cavkit(["recipe", "check", str(path)], site.root)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"Error: {path}: 1 problem in recipe" in result.stderr
    assert "model.encoder.depth: must be between 1 and 24, got 99" in result.stderr
    debug = _cavkit(["--debug", "recipe", "check", str(path)], site.root)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "RecipeError" in debug.stderr


RECIPES = sorted((REPO / "recipes").rglob("*.yaml")) if (REPO / "recipes").is_dir() else []


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_every_shipped_recipe_passes_check(recipe):
    result = run_cli(["recipe", "check", str(recipe)])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_every_shipped_recipe_resolves_to_a_recipe_that_resolves_identically(recipe, tmp_path):
    """`recipe show` output is itself a valid recipe with the same resolution (what a run directory
    stores must load back to the same thing)."""
    shown = run_cli(["recipe", "show", str(recipe)])
    assert shown.exit_code == 0, shown.stderr
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(shown.stdout)
    again = run_cli(["recipe", "show", str(resolved)])
    assert again.exit_code == 0, again.stderr
    assert yaml.safe_load(again.stdout) == yaml.safe_load(shown.stdout)


def test_there_are_shipped_recipes():
    assert any(p.name == "quickstart.yaml" for p in RECIPES)


def test_a_key_set_one_section_too_high_points_to_where_it_lives(toy_host, tmp_path):
    path = str(write(tmp_path, GOOD))
    result = run_cli(["recipe", "check", path, "--set", "trainer.lr=1e-4"], host=toy_host)
    assert result.exit_code == 2
    assert "  - trainer.lr: unknown key 'lr'; did you mean 'trainer.optimizer.lr'?" in result.stderr


def test_model_init_of_older_recipes_moves_to_trainer_init(toy_host, tmp_path, capsys):
    """One init setting: an old recipe's model.init still loads, as trainer.init, with a note."""
    old = write(tmp_path, GOOD.replace("  width: 8\n", "  width: 8\n  init: pretrained/old.pth\n"), "old.yaml")
    recipe = load_recipe(str(old), host=toy_host)
    assert recipe.trainer.init == "pretrained/old.pth"
    assert "model.init is deprecated; it now is trainer.init" in capsys.readouterr().err
    cleared = load_recipe(str(old), ["model.init=null"], host=toy_host)
    assert cleared.trainer.init is None
    both = run_cli(["recipe", "check", str(old), "--set", "trainer.init=other.pth"], host=toy_host)
    assert both.exit_code == 2
    assert ("  - model.init: model.init ('pretrained/old.pth') and trainer.init ('other.pth') name different "
            "checkpoints; model.init is a deprecated alias of trainer.init: keep only trainer.init") in both.stderr

"""Recipes are untrusted YAML: what reading one can cost is bounded, and each bound is one message.

The command-line cases run `cavkit` in a child process with a timeout and a 4 GB address-space
limit, so a regression fails the test (timeout, MemoryError) instead of exhausting the machine.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cavkit.errors import Problem, RecipeError
from cavkit.recipe.load import MAX_DEPTH, MAX_NODES, MAX_RECIPE_BYTES, RecipeLimitError, parse_yaml

HEADER = "cavkit: 1\nmodel: {type: cav_mae}\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def cavkit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cavkit", *args], check=False, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory
    )


def alias_bomb(levels: int = 9, fan: int = 9) -> str:
    """``fan ** levels`` strings from a few hundred bytes: every level lists the previous one ``fan`` times."""
    lines = [f"requires: &x0 [{', '.join(['lol'] * fan)}]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * fan)}]")
    return HEADER + "\n".join(lines) + f"\nseed: *x{levels - 1}\n"


def check_refused(path: Path, *words: str, extra: tuple[str, ...] = ()) -> str:
    result = cavkit("recipe", "check", str(path), *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert len(result.stderr) < 3000
    return result.stderr


def test_alias_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1000  # 9**9 = 387 million strings once expanded
    check_refused(path, f"more than {MAX_NODES} values once YAML aliases are expanded")


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text(HEADER + "requires: &r [*r]\n")
    check_refused(path, "a YAML alias refers to a node that contains it")


def test_nested_brackets_are_refused_in_files_and_in_set(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(HEADER + "seed: " + "[" * 10_000 + "]" * 10_000 + "\n")
    check_refused(path, f"nesting deeper than {MAX_DEPTH} levels at line 3")
    plain = tmp_path / "plain.yaml"
    plain.write_text(HEADER)
    check_refused(plain, "--set: 'seed': the value is too large or deep", extra=("--set", "seed=" + "[" * 10_000))


def test_base_must_be_a_regular_file(tmp_path):
    path = tmp_path / "zero.yaml"
    path.write_text(HEADER + "base: /dev/zero\n")
    check_refused(path, "base: /dev/zero: not a regular file")


def test_oversized_recipe_is_refused_without_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as fh:  # 50 MB: a list of 25 million items
        fh.write(HEADER + "requires: [")
        fh.write("a," * 25_000_000)
        fh.write("a]\n")
    check_refused(path, f"larger than {MAX_RECIPE_BYTES} bytes", "big.yaml")


def test_error_text_quotes_a_bounded_excerpt(tmp_path):
    """A file of thousands of unknown keys (any readable text file as `base:`) gives a short message."""
    keys = tmp_path / "keys.txt"
    keys.write_text('"' + "x" * 1000 + '": 1\n' + "".join(f"key{i}: value\n" for i in range(5000)))
    path = tmp_path / "uses_keys.yaml"
    path.write_text(f"base: {keys}\n" + HEADER)
    message = check_refused(path, "5001 problems in recipe", " characters)", "... and 4981 more")
    assert "key4999" not in message


def test_limits_in_parse_yaml():
    with pytest.raises(RecipeLimitError, match="once YAML aliases are expanded"):
        parse_yaml("a: &a [" + "[" * 40 + "1" + "]" * 40 + "]\nb: " + "[" * 40 + "*a" + "]" * 40)
    with pytest.raises(RecipeLimitError, match="more than"):
        parse_yaml("x" * (MAX_RECIPE_BYTES + 1))
    # at the limits: fine
    nested = parse_yaml("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    depth = 0
    while isinstance(nested, list) and nested:
        nested, depth = nested[0], depth + 1
    assert depth == MAX_DEPTH - 2
    assert len(parse_yaml("[" + ",".join(["1"] * (MAX_NODES - 1)) + "]")) == MAX_NODES - 1
    shared = parse_yaml("a: &a [1, 2]\nb: *a\n")
    assert shared == {"a": [1, 2], "b": [1, 2]}


def test_recipe_error_lists_at_most_twenty_problems():
    error = RecipeError("r.yaml", [Problem(f"k{i}", "x" * 1000) for i in range(30)])
    lines = str(error).splitlines()
    assert lines[0] == "r.yaml: 30 problems in recipe" and lines[-1] == "  ... and 10 more"
    assert len(lines) == 22 and max(len(line) for line in lines) < 340
    assert len(error.problems) == 30


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.optimizer.lr=.nan", "trainer.optimizer.lr: must be >= 0.0, got nan"),
        ("trainer.optimizer.lr=.inf", "trainer.optimizer.lr: must be a finite number, got inf"),
        ("trainer.optimizer.weight_decay=.inf", "trainer.optimizer.weight_decay: must be a finite number, got inf"),
        ("trainer.clip_grad=.nan", "trainer.clip_grad: must be >= 0.0, got nan"),
        ("trainer.schedule.min_lr=.inf", "trainer.schedule.min_lr: must be a finite number, got inf"),
        ("trainer.optimizer.betas=[0.9, 1.0]", "trainer.optimizer.betas: each beta must be in [0, 1), got (0.9, 1.0)"),
        ("trainer.optimizer.betas=[-0.1, 0.999]", "trainer.optimizer.betas: each beta must be in [0, 1), got (-0.1, 0.999)"),
        ("objectives.0.weight=.nan", "objectives.0.weight: must be a finite number >= 0, got nan"),
        ("objectives.0.weight=.inf", "objectives.0.weight: must be a finite number >= 0, got inf"),
    ],
)
def test_recipe_check_refuses_non_finite_and_out_of_range_numbers(tmp_path, override, message):
    from cavkit.testing import run_cli

    path = tmp_path / "r.yaml"
    path.write_text(HEADER + "objectives: [{type: mae, weight: 1.0}]\n")
    assert run_cli(["recipe", "check", str(path)]).exit_code == 0
    result = run_cli(["recipe", "check", str(path), "--set", override])
    assert result.exit_code == 2
    assert f"  - {message}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_convert_refuses_a_checkpoint_whose_stored_recipe_is_too_deep(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "deep.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "cavkit", "recipe": "model: " + "[" * 10_000})
    result = cavkit("convert", str(path), str(tmp_path / "out.pth"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "the stored recipe is too large or deep (nesting deeper than 64 levels" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.pth").exists()

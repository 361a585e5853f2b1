"""The recipe file beside a weights file is untrusted input like any recipe: read with the recipe
limits (size, regular file), never without bound (issue 16 item 10)."""

from __future__ import annotations

import os

import pytest
from safetensors.torch import load_file, save_file

from cavkit.checkpoints.load import load_model
from cavkit.errors import CheckpointError
from cavkit.recipe.load import MAX_RECIPE_BYTES
from cavkit.testing import run_cli

HEADS = ["--set", "encoder.num_heads=2", "--set", "decoder.num_heads=2"]


@pytest.fixture
def bare_weights(official_file, tmp_path):
    """``(weights without recipe metadata, the recipe text convert wrote)``: such a file's recipe comes from its sidecar."""
    src, _ = official_file("cavmae_tiny")
    assert run_cli(["convert", str(src), str(tmp_path / "m.safetensors"), *HEADS]).exit_code == 0
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(tmp_path / "m.safetensors")), str(bare))  # no metadata
    return bare, (tmp_path / "m.yaml").read_text()


def test_a_sidecar_recipe_is_read(bare_weights):
    bare, recipe = bare_weights
    bare.with_suffix(".yaml").write_text(recipe)
    assert load_model(str(bare)).cavkit_node.spec.name == "cav_mae"


def test_an_oversized_sidecar_recipe_is_refused_with_the_limit(bare_weights):
    bare, recipe = bare_weights
    bare.with_suffix(".yaml").write_text(recipe + "#" * (MAX_RECIPE_BYTES + 10))
    with pytest.raises(
        CheckpointError, match=f"cannot use the recipe beside it: .*larger than {MAX_RECIPE_BYTES} bytes"
    ):
        load_model(str(bare))


def test_a_sidecar_that_is_not_a_regular_file_is_refused_not_read_forever(bare_weights):
    bare, _ = bare_weights
    os.mkfifo(bare.with_suffix(".yaml"))  # reading a FIFO with no writer would block
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(str(bare))

"""A tiny CAV-MAE Sync model trained for a few steps by the real `cavkit train`, shared by the picture tests.

Its run directory (TensorBoard events, recipe, manifest, metrics with a retrieval evaluation,
weights) feeds `cavkit report`; its weights (recipe with ``mae`` ``norm_pix_loss: false`` in the
metadata) feed `cavkit inpaint`, `cavkit localize` and `cavkit embed`.
"""

from __future__ import annotations

import pytest
import torch
from pictures_helpers import SMALL, synthetic_args  # noqa: F401  (re-exported for the tests)

torch.set_num_threads(1)  # tiny models: one intra-op thread is faster on a small shared CPU


TINY_RECIPE = """
cavkit: 1
seed: 0
model:
  type: cav_mae_sync
  audio_length: 32
  image_size: 32
  embed_dim: 32
  encoder: {{depth: 1, num_heads: 2, num_register_tokens: 2}}
  decoder: {{embed_dim: 32, depth: 1, num_heads: 2}}
objectives:
  - {{type: mae, weight: 1.0, norm_pix_loss: false}}
  - {{type: sync_contrastive, weight: 0.5}}
data:
  train: {{type: synthetic, layout: sync, mode: train, num_clips: 16, image_size: 32, audio_length: 128,
          segment_length: 32, num_frames: 4}}
  eval: {{type: synthetic, layout: sync, mode: retrieval, num_clips: 8, split: test, image_size: 32, audio_length: 128,
         segment_length: 32, num_frames: 4}}
retrieval: {{type: diagonal_mean}}
trainer: {{max_steps: 4, batch_size: 8, log_every: 1, eval_every_epochs: 0}}
run: {{dir: "{run_dir}", keep_last: 1}}
"""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Path of the run directory of a 4-step `cavkit train` of a tiny Sync model."""
    from cavkit.testing import run_cli

    root = tmp_path_factory.mktemp("pictures-run")
    run_dir = root / "run"
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.format(run_dir=run_dir))
    result = run_cli(["train", str(recipe), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr[-3000:]
    assert (run_dir / "weights" / "final.safetensors").exists()
    return run_dir


@pytest.fixture(scope="session")
def tiny_weights(tiny_run):
    return str(tiny_run / "weights" / "final.safetensors")

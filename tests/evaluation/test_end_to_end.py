"""Checkpoint -> synthetic data -> features -> retrieval / kNN, through the real CLI.

The models are tiny, randomly initialised and frozen (saved as cavkit safetensors checkpoints),
so these tests exercise the whole evaluation path in seconds: dataset building and mode choice,
one feature extraction for both directions, every strategy, JSON, gallery and kNN. A frozen random
encoder already separates the synthetic classes by timbre, so audio kNN lands far above chance;
cross-modal retrieval needs a trained model (see the slow test at the end).
"""

from __future__ import annotations

import json

import pytest
import torch

from cavkit.evaluation.features import Features
from cavkit.testing import run_cli

SYNTH = {"image_size": 32, "audio_length": 128, "num_frames": 4}


def _save_tiny(tmp_path, model_data: dict, name: str) -> str:
    from cavkit.checkpoints.convert import cavkit_bytes
    from cavkit.config import structure_node
    from cavkit.plugins import get_plugin_host

    registry = get_plugin_host().registry
    node, problems = structure_node("model", model_data, registry=registry)
    assert not problems, problems
    torch.manual_seed(0)
    model = node.build()
    model.cavkit_node = node
    blob, _ = cavkit_bytes(model)
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(blob)
    return str(path)


@pytest.fixture(scope="module")
def sync_checkpoint(tmp_path_factory):
    return _save_tiny(
        tmp_path_factory.mktemp("sync"),
        {"type": "cav_mae_sync", "audio_length": 32, "image_size": 32, "embed_dim": 32,
         "encoder": {"depth": 1, "num_heads": 2, "num_register_tokens": 2},
         "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "sync",
    )


@pytest.fixture(scope="module")
def cav_mae_checkpoint(tmp_path_factory):
    return _save_tiny(
        tmp_path_factory.mktemp("cav"),
        {"type": "cav_mae", "audio_length": 128, "image_size": 32, "embed_dim": 32,
         "encoder": {"depth": 1, "num_heads": 2}, "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "cav_mae",
    )


def test_sync_checkpoint_retrieval_on_synthetic_clips(sync_checkpoint, tmp_path):
    out = tmp_path / "retrieval.json"
    feats = tmp_path / "features.safetensors"
    gallery = tmp_path / "gallery.png"
    data = [f"--data={k}={v}" for k, v in {**SYNTH, "layout": "sync", "segment_length": 32, "num_clips": 12, "split": "test"}.items()]
    result = run_cli([
        "eval", "retrieval", "--checkpoint", sync_checkpoint, "--dataset-type", "synthetic", *data,
        "--strategy", "all", "--json", str(out), "--save-features", str(feats), "--gallery", str(gallery),
        "--batch-size", "5",
    ])
    assert result.exit_code == 0, result.stderr
    features = Features.load(str(feats))
    # retrieval mode was chosen: all K = 4 frames per clip, Sync global tokens, unit length
    assert features.audio.shape == (12, 4, 32) and features.visual.shape == (12, 4, 32)
    assert features.embedding == "global"
    torch.testing.assert_close(features.audio.norm(dim=-1), torch.ones(12, 4))
    report = json.loads(out.read_text())
    assert {"pooled", "diagonal_mean", "diagonal_max", "mean", "max"} <= set(report["results"])
    for by_direction in report["results"].values():
        for metrics in by_direction.values():
            assert 1.0 <= metrics["MedR"] <= 12.0 and metrics["queries"] == 12
    assert gallery.read_bytes()[:4] == b"\x89PNG"


def test_cav_mae_checkpoint_knn_far_above_chance(cav_mae_checkpoint, tmp_path):
    recipe = tmp_path / "knn.yaml"
    common = {"type": "synthetic", "layout": "cav_mae", **SYNTH}
    recipe.write_text(json.dumps({
        "cavkit": 1,
        "model": {"type": "cav_mae", "audio_length": 128, "image_size": 32, "embed_dim": 32,
                  "encoder": {"depth": 1, "num_heads": 2}, "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
        "data": {"train": {**common, "num_clips": 64}, "eval": {**common, "num_clips": 32, "split": "test"}},
    }))
    out = tmp_path / "knn.json"
    result = run_cli([
        "eval", "classify", str(recipe), "--checkpoint", cav_mae_checkpoint, "--knn", "20",
        "--embedding-modality", "audio", "--json", str(out),
    ])
    assert result.exit_code == 0, result.stderr
    knn = json.loads(out.read_text())["knn"]
    chance = 1 / 8
    assert knn["samples"] == 32
    assert knn["accuracy"] >= 3 * chance, knn
    assert knn["mAP"] > 0.3


def test_classify_without_a_classifier_head_is_a_clear_error(cav_mae_checkpoint):
    result = run_cli([
        "eval", "classify", "--checkpoint", cav_mae_checkpoint, "--dataset-type", "synthetic",
        *[f"--data={k}={v}" for k, v in {**SYNTH, "layout": "cav_mae", "num_clips": 4}.items()],
    ])
    assert result.exit_code == 2 and "no classifier" in result.stderr

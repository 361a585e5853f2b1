"""The Sync classifier through the command line: the tiny recipe trains with ``cavkit train`` and is
evaluated by ``cavkit eval classify`` over every frame of a clip; the three published-size recipes
pass ``cavkit recipe check``; a label count that disagrees with the label file is one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cavkit.errors import UsageError
from cavkit.testing import run_cli

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "sync_classifier_tiny.yaml"
REFERENCE_DATA = (REPO / ".." / "shared" / "fixtures" / "reference" / "data").resolve()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sync_classifier_run")
    result = run_cli(["train", str(TINY), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.stderr
    return run_dir / "weights" / "final.safetensors"


def test_tiny_sync_classifier_trains_and_evaluates(trained, tmp_path):
    out = tmp_path / "metrics.json"
    result = run_cli(["eval", "classify", str(TINY), "--checkpoint", str(trained), "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "both" in result.stdout
    metrics = json.loads(out.read_text())["modes"]["both"]
    assert (metrics["samples"], metrics["frames"]) == (8, 4)

    # the same numbers from the trained weights run by hand on whole clips of the recipe's eval set
    from cavkit.checkpoints.load import load_model
    from cavkit.data.configs import SyntheticDataConfig
    from cavkit.data.synthetic import SyntheticDataset
    from cavkit.evaluation.classification import classification_metrics

    model = load_model(str(trained))
    data = SyntheticDataset(
        SyntheticDataConfig(
            layout="sync",
            mode="retrieval",
            num_clips=8,
            num_classes=4,
            num_frames=4,
            image_size=32,
            audio_length=128,
            segment_length=32,
            split="test",
        )
    )
    items = [data[i] for i in range(len(data))]
    audio, image = torch.stack([it["audio"] for it in items]), torch.stack([it["image"] for it in items])
    assert audio.shape == (8, 4, 32, 128)
    with torch.no_grad():
        logits = model(audio, image).logits
    expected = classification_metrics(torch.softmax(logits, dim=-1), torch.stack([it["label"] for it in items]))
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["mAP"] == pytest.approx(expected["mAP"])

    # --frames feeds a subset of each clip's frames to the aggregator
    result = run_cli(
        ["eval", "classify", str(TINY), "--checkpoint", str(trained), "--frames", "0,2", "--json", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    subset = json.loads(out.read_text())["modes"]["both"]
    assert subset["frames"] == 2
    with torch.no_grad():
        logits = model(audio[:, [0, 2]], image[:, [0, 2]]).logits
    expected = classification_metrics(torch.softmax(logits, dim=-1), torch.stack([it["label"] for it in items]))
    assert subset["mAP"] == pytest.approx(expected["mAP"])


def test_eval_refuses_frames_the_clips_do_not_have_and_other_modalities(trained):
    result = run_cli(["eval", "classify", str(TINY), "--checkpoint", str(trained), "--frames", "2-5"])
    assert result.exit_code != 0
    assert "--frames 4,5: the evaluation clips have 4 frames (0-3)" in result.stderr
    result = run_cli(["eval", "classify", str(TINY), "--checkpoint", str(trained), "--mode", "audio"])
    assert result.exit_code != 0
    assert "built for modality 'both'" in result.stderr and "Traceback" not in result.stderr


def test_published_size_recipes_pass_recipe_check():
    names = ["sync_finetune_as20k.yaml", "sync_finetune_vggsound.yaml", "sync_linear_probe.yaml"]
    result = run_cli(["recipe", "check", *(str(REPO / "recipes" / n) for n in names)])
    assert result.exit_code == 0, result.stdout + result.stderr
    for name in names:
        assert f"{name}: ok" in result.stdout


def test_label_count_disagreeing_with_the_label_file_is_one_clear_message(tmp_path):
    if not (REFERENCE_DATA / "labels.csv").exists():
        pytest.skip(f"reference clips not found at {REFERENCE_DATA}")
    recipe = tmp_path / "bad_labels.yaml"
    recipe.write_text(
        f"base: {TINY}\n"
        "model: {num_classes: 5}\n"
        "trainer: {batch_size: 3}\n"
        "data:\n"
        f"  train: {{type: cav_mae_sync, datafile: {REFERENCE_DATA / 'data.json'}, "
        f"label_csv: {REFERENCE_DATA / 'labels.csv'}, mode: retrieval, segment_length: 32, image_size: 32}}\n"
        "  eval: null\n"
    )
    result = run_cli(["train", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "1 problem before training" in result.stderr
    assert (
        f"  - data.train.label_csv: the label file {REFERENCE_DATA / 'labels.csv'} lists 2 classes but "
        "model.num_classes is 5\n      fix: set model.num_classes: 2 (or --set model.num_classes=2), or point "
        "data.train.label_csv at the label file of the model's 5 classes" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_label_count_disagreeing_with_a_synthetic_set_names_the_dataset(tmp_path):
    result = run_cli(["train", str(TINY), "--set", "model.num_classes=6", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code != 0
    # one line for both roles (train and eval have the same 4 classes)
    assert "1 problem before training" in result.stderr
    assert "data.train, data.eval: the synthetic dataset has 4 classes but model.num_classes is 6" in result.stderr
    # the trainer's own check (after the datasets are built) words it the same way
    from cavkit.engine.label_count import check_label_count
    from cavkit.recipe import load_recipe

    recipe = load_recipe(str(TINY), ["model.num_classes=6"])
    with pytest.raises(
        UsageError, match=r"data.train: the synthetic dataset has 4 classes but model.num_classes is 6; set"
    ):
        check_label_count(recipe, {"train": recipe.data.train.build()})

"""The tiny recipes in recipes/tiny train the real built-in models on the synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cavkit.engine import checkpoint as ckpt
from cavkit.engine.dist import DistInfo
from cavkit.engine.trainer import Trainer
from cavkit.recipe import load_recipe
from cavkit.testing import plugin_host, run_cli

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tiny"


def trainer_for(name: str, run_dir: Path, *overrides: str, **kwargs) -> Trainer:
    recipe = load_recipe(str(RECIPES / f"{name}.yaml"), list(overrides), host=plugin_host())
    return Trainer(recipe, run_dir=str(run_dir), dist=DistInfo(), argv=["test"], **kwargs)


@pytest.mark.parametrize("name, logged", [
    ("cav_mae_tiny", "train/infonce/c_acc"),
    ("sync_tiny", "train/sync_contrastive/c_acc"),
    ("classifier_tiny", "train/loss/classification"),
])
def test_tiny_recipe_trains_a_few_steps(tmp_path: Path, name: str, logged: str) -> None:
    trainer = trainer_for(name, tmp_path / "run", "trainer.max_steps=3")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert result["step"] == 3
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert len(train) == 3 and logged in train[0]
    assert all(torch.isfinite(torch.tensor(x["train/loss"])) for x in train)
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    if name == "classifier_tiny":
        assert trainer.optimizer.param_groups[1]["initial_lr"] == pytest.approx(100 * trainer.optimizer.param_groups[0]["initial_lr"])


def test_sync_resume_mid_epoch_through_the_cli_is_bitwise(tmp_path: Path) -> None:
    recipe = str(RECIPES / "sync_tiny.yaml")
    common = ["--set", "trainer.epochs=2", "--set", "run.checkpoint_every_steps=3", "--set", "trainer.masking_noise=device"]
    straight = run_cli(["train", recipe, *common, "--run-dir", str(tmp_path / "a")], host=plugin_host())
    assert straight.exit_code == 0, straight.stderr
    # the first part stops at step 3 of 8 (max_steps would change the cosine schedule, so stop by hand)
    first = trainer_for("sync_tiny", tmp_path / "b", "trainer.epochs=2", "run.checkpoint_every_steps=3", "trainer.masking_noise=device")

    class Stop(Exception):
        pass

    def stop(t):
        if t.step == 3:
            raise Stop

    first.on_step_end.append(stop)
    with pytest.raises(Stop):
        first.fit()
    resumed = run_cli(["train", recipe, *common, "--run-dir", str(tmp_path / "b"), "--resume", "latest"], host=plugin_host())
    assert resumed.exit_code == 0, resumed.stderr
    a = ckpt.model_state_from_file(str(tmp_path / "a" / "weights" / "final.safetensors"))
    b = ckpt.model_state_from_file(str(tmp_path / "b" / "weights" / "final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reconstruction_images_and_scalars_reach_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = trainer_for("sync_tiny", tmp_path / "run", "trainer.max_steps=2", "trainer.image_every=2", "run.tensorboard=true")
    trainer.fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"recon/audio", "recon/image"} <= set(tags["images"])
    assert {"train/loss", "train/loss/mae", "train/sync_contrastive/c_acc", "train/lr/base"} <= set(tags["scalars"])
    assert "recipe/text_summary" in tags["tensors"]


def test_training_checkpoints_store_the_input_declaration_and_loading_prefers_it(tmp_path: Path) -> None:
    import attrs

    from cavkit.checkpoints.load import load_model
    from cavkit.checkpoints.read import read_checkpoint
    from cavkit.models.inputs import InputSpec, derive_input_spec, input_spec_of

    trainer = trainer_for("sync_tiny", tmp_path / "run", "trainer.max_steps=2")
    trainer.fit()
    uri = ckpt.latest_checkpoint(str(tmp_path / "run"))
    state = ckpt.load_object(uri)
    declared = derive_input_spec(trainer.recipe.model)
    assert declared.layout == "frame_segments"
    assert InputSpec.from_json(state["inputs"]) == declared and read_checkpoint(uri).inputs == declared
    # a stored declaration wins over the one the recipe would give
    stored = attrs.evolve(declared, num_frames=7, global_tokens=not declared.global_tokens)
    edited = tmp_path / "edited.pt"
    ckpt.save_object({**state, "inputs": stored.to_json()}, str(edited))
    assert load_model(str(edited)).input_spec == stored
    # a checkpoint from before the declaration was stored still loads, with it derived from the recipe
    older = tmp_path / "older.pt"
    ckpt.save_object({k: v for k, v in state.items() if k != "inputs"}, str(older))
    assert read_checkpoint(str(older)).inputs is None and input_spec_of(load_model(str(older))) == declared

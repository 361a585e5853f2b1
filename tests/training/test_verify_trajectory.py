"""``cavkit verify trajectory``: the published training loops, replayed through cavkit's engine.

The two shared fixtures replay in full and must pass. Perturbed copies (one structured field of the
json changed, tensors linked from ../shared) show that the replay is configured from the fixture's
fields, not from constants: each must exit 1 and name the first step and quantity that diverged.
They replay two steps only (``--set trainer.max_steps=2``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cavkit.cli import main

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "training"
PRETRAIN, FINETUNE = SHARED / "traj_pretrain.json", SHARED / "traj_finetune.json"

pytestmark = pytest.mark.skipif(
    not PRETRAIN.is_file() or not FINETUNE.is_file(), reason=f"training-trajectory fixtures not found in {SHARED}"
)


def verify(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["verify", "trajectory", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


def perturbed(tmp_path: Path, source: Path, edit) -> Path:
    """A copy of ``source`` json with ``edit(meta)`` applied; the tensors are linked, not copied."""
    meta = json.loads(source.read_text())
    edit(meta)
    for tensors in SHARED.glob("*.safetensors"):
        target = tmp_path / tensors.name
        try:
            target.symlink_to(tensors)
        except OSError:
            shutil.copy(tensors, target)
    path = tmp_path / source.name
    path.write_text(json.dumps(meta))
    return path


def test_published_pretraining_trajectory_replays_within_tolerance(capsys):
    code, out, err = verify(capsys, str(PRETRAIN))
    assert code == 0, out + err
    assert "traj_pretrain.json OK: every step, every validation and the final weights are within tolerance" in out
    steps = [line for line in out.splitlines() if line.split()[2:3] == ["cavkit"]]
    assert len(steps) == 18


def test_published_finetuning_trajectory_replays_within_tolerance(capsys):
    code, out, err = verify(capsys, str(FINETUNE))
    assert code == 0, out + err
    assert "traj_finetune.json OK" in out
    assert "0.0001,0.001" in out and "5e-05,0.0005" in out  # both parameter groups, halved after epoch 1


def test_adamw_override_diverges(capsys):
    code, _, err = verify(capsys, str(PRETRAIN), "--set", "trainer.optimizer.name=adamw", "--set", "trainer.max_steps=2")
    assert code == 1
    assert "DIVERGED: first divergence at step 1 (epoch 1): loss_c" in err



ARG_CHANGES = {
    # field of args changed: (fixture, new value, steps replayed, where the replay must say it diverged)
    "contrast_loss_weight": (PRETRAIN, 0.02, 2, "first divergence at step 0 (epoch 1): loss: "),
    "ftmode": (FINETUNE, "audioonly", 1, "first divergence at step 0 (epoch 1): loss"),
    # frozen backbone: only the head trains; upstream's frozen group still reports its lr, so lrs agree
    "freeze_base": (FINETUNE, True, 2, "first divergence at step 1 (epoch 1): loss"),
    # targets rebuilt with cavkit's loader smoothing no longer equal the recorded ones
    "label_smooth": (FINETUNE, 0.2, 1, "first divergence before training: training targets (label smoothing)"),
}


@pytest.mark.parametrize("field", list(ARG_CHANGES))
def test_settings_come_from_the_fixture_args(field, tmp_path, capsys):
    source, value, steps, message = ARG_CHANGES[field]
    path = perturbed(tmp_path, source, lambda m: m["args"].update({field: value}))
    code, _, err = verify(capsys, str(path), "--set", f"trainer.max_steps={steps}")
    assert code == 1
    assert message in err
    assert "lr[" not in err


def _double_lr(meta):
    meta["args"]["lr"] *= 2
    for step in meta["steps"]:
        step["lr"] = [2 * x for x in step["lr"]]


def _head_lr_20(meta):
    meta["args"]["head_lr"] = 20.0
    for step in meta["steps"]:
        step["lr"] = [step["lr"][0], 20 * step["lr"][0]]


@pytest.mark.parametrize("source,edit,shown", [(PRETRAIN, _double_lr, "0.002"), (FINETUNE, _head_lr_20, "0.0001,0.002")],
                         ids=["lr", "head_lr"])
def test_rates_come_from_the_fixture_args(source, edit, shown, tmp_path, capsys):
    """A rate changed in args and in every recorded step: the lr columns agree, the losses part at step 1."""
    code, out, err = verify(capsys, str(perturbed(tmp_path, source, edit)), "--set", "trainer.max_steps=2")
    assert code == 1
    assert shown in out
    assert "first divergence at step 1 (epoch 1): loss" in err
    assert "lr[" not in err


def test_recorded_lr_mismatch_is_named(tmp_path, capsys):
    def edit(meta):
        meta["steps"][1]["lr"] = [0.002]

    code, _, err = verify(capsys, str(perturbed(tmp_path, PRETRAIN, edit)), "--set", "trainer.max_steps=2")
    assert code == 1
    assert "first divergence at step 1 (epoch 1): lr[0]: cavkit 0.001, published 0.002" in err


def test_unreplayable_fixtures_get_one_clear_message(tmp_path, capsys):
    code, _, err = verify(capsys, str(perturbed(tmp_path, PRETRAIN, lambda m: m["args"].update(mask_mode="time"))))
    assert code == 2
    assert "args.mask_mode 'time'" in err and "Traceback" not in err
    code, _, err = verify(capsys, str(tmp_path / "missing.json"))
    assert code == 2
    assert "no such trajectory fixture" in err
    code, _, err = verify(capsys, str(PRETRAIN), "--set", "trainer.optimizer.nam=adamw")
    assert code == 2
    assert "traj_pretrain.json (its replay recipe" in err and "did you mean 'name'" in err
    code, _, err = verify(capsys, str(PRETRAIN), "--set", "trainer.batch_size=8")
    assert code == 2
    assert "keep trainer.batch_size=4" in err


def test_parameters_the_published_loop_never_updated_must_stay_bitwise(tmp_path, capsys):
    """A fixture claiming that an updated tensor was never touched: the replay names it after training."""
    path = perturbed(tmp_path, FINETUNE, lambda m: m["optimizer"].update(not_updated_params=["mlp_head.1.bias"]))
    code, _, err = verify(capsys, str(path))
    assert code == 1
    assert "first divergence after training: final weights: mlp_head.1.bias: (changed, but it gets no gradient" in err


def test_show_recipe_prints_the_published_run_as_a_cavkit_recipe(capsys):
    import yaml

    code, out, _ = verify(capsys, str(PRETRAIN), "--show-recipe")
    assert code == 0
    recipe = yaml.safe_load(out)
    assert recipe["model"]["encoder"] == {"type": "cav_mae_encoder", "depth": 11, "joint_depth": 1, "num_heads": 2,
                                          "mlp_ratio": 4.0}
    assert [(o["type"], o["weight"]) for o in recipe["objectives"]] == [("mae", 1.0), ("infonce", 0.01)]
    assert recipe["trainer"]["optimizer"]["name"] == "adam" and recipe["trainer"]["optimizer"]["weight_decay"] == 5e-7
    assert recipe["trainer"]["schedule"] == {"type": "step", "decay_start": 2, "decay_every": 1, "gamma": 0.5}

"""Training behaviour on the tiny test plugin: the loop, non-finite losses, averaging, freezing, data order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import engine_helpers as h
from cavkit.engine import checkpoint as ckpt
from cavkit.engine.data import GlobalBatchPlan, MicroBatchSampler
from cavkit.engine.finite import NonFiniteLossError


def test_tiny_run_writes_run_directory_and_learns(tmp_path: Path) -> None:
    data = h.tiny_recipe(trainer={"epochs": 6, "log_every": 6}, run={"tensorboard": True})
    trainer = h.make_trainer(data, str(tmp_path / "run"), tmp_path)
    result = trainer.fit()
    run = tmp_path / "run"
    assert result["step"] == 36
    assert yaml.safe_load((run / "recipe.yaml").read_text())["trainer"]["epochs"] == 6
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["versions"]["cavkit"] and manifest["starts"][0]["world_size"] == 1
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert {"train/loss", "train/loss/engine_tiny_mse", "train/engine_tiny_nce/c_acc", "train/lr/base",
            "train/grad_norm", "train/samples_per_s"} <= set(train[0])
    assert train[-1]["train/loss"] < train[0]["train/loss"]
    assert [x["epoch"] for x in lines if x["kind"] == "epoch"] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in ckpt.list_checkpoints(str(run))] == [30, 36]  # keep_last 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    final = ckpt.model_state_from_file(str(run / "weights" / "final.safetensors"))
    assert all(torch.equal(final[k], v) for k, v in trainer.model.state_dict().items())


def test_memory_run_directory(tmp_path: Path) -> None:
    trainer = h.make_trainer(h.tiny_recipe(trainer={"epochs": 1}, run={"tensorboard": True}), "memory://engine-run/a", tmp_path)
    trainer.fit()
    import fsspec

    fs = fsspec.filesystem("memory")
    assert fs.exists("/engine-run/a/checkpoints/step-00000006.pt")
    assert fs.exists("/engine-run/a/weights/final.safetensors")
    assert fs.glob("/engine-run/a/tensorboard/events.out.tfevents.*")


def test_non_finite_loss_stops_with_step_and_objective_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    data = h.tiny_recipe(
        objectives=[{"type": "engine_tiny_mse"}, {"type": "engine_nan_after", "name": "exploding", "calls": 7}],
        trainer={"epochs": 3},
    )
    trainer = h.make_trainer(data, str(tmp_path / "run"), tmp_path)
    before = None

    def remember(t):
        nonlocal before
        before = h.model_state(t)

    trainer.on_step_end.append(remember)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "step 8" in message and "exploding" in message and "step-00000006.pt" in message
    good = ckpt.latest_checkpoint(str(tmp_path / "run"))
    assert good.endswith("step-00000006.pt")
    assert ckpt.check_checkpoint(ckpt.load_object(good), good)["progress"]["step"] == 6
    # the failing step did not touch the weights
    after = h.model_state(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "run" / "weights" / "final.safetensors").exists()


def test_weight_averaging_over_epochs(tmp_path: Path) -> None:
    data = h.tiny_recipe(trainer={"epochs": 4, "average_weights": {"start_epoch": 2, "end_epoch": 3}})
    snapshots = {}

    def snap(t):
        if t.step_in_epoch == 0:
            snapshots[t.epoch] = {k: v.clone() for k, v in t.model.state_dict().items()}

    trainer = h.make_trainer(data, str(tmp_path / "run"), tmp_path, on_step_end=[snap])
    result = trainer.fit()
    averaged = ckpt.model_state_from_file(result["averaged_weights"])
    for key, value in averaged.items():
        assert torch.equal(value, (snapshots[2][key] + snapshots[3][key]) / 2), key


def test_freeze_base_trains_only_the_head(tmp_path: Path) -> None:
    data = h.tiny_recipe(objectives=[{"type": "engine_tiny_ce"}],
                         trainer={"freeze_base": True, "epochs": 1, "optimizer": {"head_lr_scale": 10.0}})
    trainer = h.make_trainer(data, str(tmp_path / "run"), tmp_path)
    start = h.model_state(trainer)
    trainer.fit()
    end = h.model_state(trainer)
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed == {"model.head.weight", "model.head.bias"}
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.1)


def test_data_plan_is_independent_of_device_count_and_accumulation() -> None:
    plan = GlobalBatchPlan(40, 8, seed=5)

    def seen(world: int, accum: int, batch: int) -> list[list[int]]:
        steps = []
        samplers = [iter(MicroBatchSampler(plan, epoch=1, start_step=0, rank=r, world_size=world,
                                           batch_size=batch, grad_accum=accum)) for r in range(world)]
        for _ in range(plan.steps_per_epoch):
            step = []
            for _ in range(accum):
                for sampler in samplers:
                    step += next(sampler)
            steps.append(sorted(step))
        return steps

    assert seen(1, 1, 8) == seen(2, 1, 4) == seen(1, 2, 4) == seen(2, 2, 2)
    resumed = list(MicroBatchSampler(plan, epoch=1, start_step=3, rank=0, world_size=1, batch_size=8, grad_accum=1))
    assert sorted(resumed[0]) == seen(1, 1, 8)[3]
    assert seen(1, 1, 8) != [sorted(b) for b in MicroBatchSampler(plan, epoch=2, start_step=0, rank=0, world_size=1, batch_size=8, grad_accum=1)]


def test_cli_train_and_bad_recipe(tmp_path: Path) -> None:
    from cavkit.testing import run_cli

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(h.tiny_recipe(trainer={"epochs": 1})))
    result = run_cli(["train", str(recipe), "--set", "trainer.max_steps=2", "--run-dir", str(tmp_path / "run")], host=h.host())
    assert result.exit_code == 0, result.stderr
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path / "run"))] == [2]
    bad = run_cli(["train", str(recipe), "--set", "trainer.epochz=2"], host=h.host())
    assert bad.exit_code == 2 and "did you mean 'epochs'" in bad.stderr


def test_streaming_training_set_trains_and_resumes_in_order(tmp_path: Path) -> None:
    data = h.tiny_recipe(data={"train": {"type": "engine_tiny_stream", "num_items": 24}},
                         trainer={"epochs": 2}, run={"checkpoint_every_steps": 4})
    straight = h.make_trainer(data, str(tmp_path / "a"), tmp_path / "ra")
    assert straight.steps_per_epoch == 6
    straight.fit()

    class Stop(Exception):
        pass

    def stop(t):
        if t.step == 4:
            raise Stop

    first = h.make_trainer(data, str(tmp_path / "b"), tmp_path / "rb", on_step_end=[stop])
    with pytest.raises(Stop):
        first.fit()
    second = h.make_trainer(data, str(tmp_path / "b"), tmp_path / "rb")
    second.fit(resume="latest")
    a, b = h.model_state(straight), h.model_state(second)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_autocast_with_clipping_and_accumulation(tmp_path: Path) -> None:
    data = h.tiny_recipe(trainer={"precision": "bf16", "clip_grad": 0.5, "grad_accum": 2, "batch_size": 2,
                                  "max_steps": 4, "log_every": 1})
    trainer = h.make_trainer(data, str(tmp_path / "run"), tmp_path)
    trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert len(lines) == 4 and all(torch.isfinite(torch.tensor(x["train/grad_norm"])) for x in lines)


def test_fp16_on_cpu_is_a_clear_usage_error(tmp_path: Path) -> None:
    from cavkit.errors import UsageError

    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        h.make_trainer(h.tiny_recipe(trainer={"precision": "fp16"}), str(tmp_path / "run"), tmp_path)


def test_validation_losses_each_epoch_are_reproducible(tmp_path: Path) -> None:
    data = h.tiny_recipe(data={"val": {"type": "engine_tiny_data", "num_items": 10, "augment": False}},
                         trainer={"epochs": 2, "eval_batch_size": 4})
    records = []
    for name in ("a", "b"):
        h.make_trainer(data, str(tmp_path / name), tmp_path / f"r{name}").fit()
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        records.append([x for x in lines if x["kind"] == "epoch"])
    first = records[0]
    assert [r["epoch"] for r in first] == [1, 2]
    assert {"val/loss", "val/loss/engine_tiny_mse", "val/loss/engine_tiny_nce"} <= set(first[0])
    assert first[0]["val/loss"] != first[1]["val/loss"]
    assert [r["val/loss"] for r in records[0]] == [r["val/loss"] for r in records[1]]


def test_an_epoch_line_is_printed_only_when_it_has_news(tmp_path: Path, capsys) -> None:
    """Validation results (or skipped clips) get a line above the progress bar; a bare epoch count does not."""
    plain = h.tiny_recipe(trainer={"epochs": 2})
    h.make_trainer(plain, str(tmp_path / "plain"), tmp_path / "rp").fit()
    assert "cavkit: epoch=" not in capsys.readouterr().err

    validated = h.tiny_recipe(data={"val": {"type": "engine_tiny_data", "num_items": 10, "augment": False}},
                              trainer={"epochs": 2, "eval_batch_size": 4})
    h.make_trainer(validated, str(tmp_path / "val"), tmp_path / "rv").fit()
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("cavkit: epoch=")]
    assert [x.split(",")[0] for x in lines] == ["cavkit: epoch=1", "cavkit: epoch=2"]
    assert all("skipped_clips=0" in x and "val/loss=" in x for x in lines)


def test_cli_non_finite_loss_exits_with_the_message(tmp_path: Path) -> None:
    from cavkit.testing import run_cli

    recipe = tmp_path / "nan.yaml"
    recipe.write_text(yaml.safe_dump(h.tiny_recipe(
        objectives=[{"type": "engine_tiny_mse"}, {"type": "engine_nan_after", "calls": 2}], trainer={"epochs": 1})))
    result = run_cli(["train", str(recipe), "--run-dir", str(tmp_path / "run")], host=h.host())
    assert result.exit_code == 1
    assert "non-finite loss at step 3" in result.stderr and "engine_nan_after" in result.stderr
    assert "Traceback" not in result.stderr

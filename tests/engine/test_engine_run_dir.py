"""One owner per run directory, honest resume, live metrics, and I/O errors as messages (issue 16, items 2-5)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import engine_helpers as h
import pytest
import torch
import yaml

from cavkit.engine import checkpoint as ckpt
from cavkit.engine.finite import NonFiniteLossError
from cavkit.engine.ownership import RunLock
from cavkit.engine.resume_settings import changed_settings, review_changes
from cavkit.errors import UsageError
from cavkit.testing import run_cli


def write_recipe(tmp: Path, **override) -> Path:
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(h.tiny_recipe(**override)))
    return path


def train(recipe: Path, run_dir: Path, *extra: str):
    return run_cli(["train", str(recipe), "--run-dir", str(run_dir), *extra], host=h.host())


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Stop(Exception):
    pass


def stop_at(step: int):
    def callback(trainer):
        if trainer.step == step:
            raise Stop

    return callback


# -- one owner -------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_run_directory_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, trainer={"max_steps": 2})
    run_dir = tmp_path / "run"
    assert train(recipe, run_dir).exit_code == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    owner = RunLock(str(run_dir))
    owner.acquire()  # as a live `cavkit train` does (a separate open file: flock conflicts like a 2nd process)
    try:
        second = train(recipe, run_dir, "--overwrite")
    finally:
        owner.release()
    assert second.exit_code == 2, second.stderr
    assert "is in use by cavkit train (pid" in second.stderr and "Traceback" not in second.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert train(recipe, run_dir, "--overwrite").exit_code == 0  # released: the lock does not outlive its owner


def test_a_fresh_run_into_a_run_directory_is_refused_unless_overwrite(tmp_path: Path) -> None:
    data = h.tiny_recipe(trainer={"epochs": 1})
    run_dir = str(tmp_path / "run")
    h.make_trainer(data, run_dir, tmp_path / "a").fit()
    final = (tmp_path / "run" / "weights" / "final.safetensors").read_bytes()
    with pytest.raises(UsageError, match="already holds a run .*--resume latest.*--overwrite"):
        h.make_trainer(data, run_dir, tmp_path / "b").fit()
    assert (tmp_path / "run" / "weights" / "final.safetensors").read_bytes() == final
    assert train(write_recipe(tmp_path, trainer={"epochs": 1}), tmp_path / "run").exit_code == 2

    other = h.tiny_recipe(seed=11, trainer={"max_steps": 2})
    h.make_trainer(other, run_dir, tmp_path / "c").fit(overwrite=True)
    assert [s for s, _ in ckpt.list_checkpoints(run_dir)] == [2]  # the old run's checkpoints are gone
    assert [r["step"] for r in records(tmp_path / "run") if r["kind"] == "train"] == [2]


# -- honest resume ----------------------------------------------------------------------------------
def test_resume_applies_a_new_learning_rate_and_weight_decay_and_says_so(tmp_path: Path, capsys) -> None:
    base = {"schedule": {"type": "constant"}, "log_every": 1, "optimizer": {"name": "adamw", "lr": 0.01}}
    data = h.tiny_recipe(trainer={**base, "epochs": 1})
    h.make_trainer(data, str(tmp_path / "run"), tmp_path / "a").fit()
    capsys.readouterr()
    lower = h.tiny_recipe(trainer={**base, "epochs": 2, "clip_grad": 1.0,
                                   "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.05}})
    trainer = h.make_trainer(lower, str(tmp_path / "run"), tmp_path / "b")
    trainer.fit(resume="latest")
    warning = capsys.readouterr().err
    assert "resuming with changed settings, applied from step 7" in warning
    for key in ("trainer.optimizer.lr 0.01 -> 0.001", "trainer.optimizer.weight_decay", "trainer.epochs 1 -> 2",
                "trainer.clip_grad None -> 1.0"):
        assert key in warning
    lrs = {r["step"]: r["train/lr/base"] for r in records(tmp_path / "run") if r["kind"] == "train"}
    assert lrs[6] == 0.01 and lrs[7] == lrs[12] == 0.001
    assert {g["weight_decay"] for g in trainer.optimizer.param_groups} == {0.05}


def test_resume_refuses_changed_fixed_settings_unless_allowed(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, trainer={"epochs": 1})
    run_dir = tmp_path / "run"
    assert train(recipe, run_dir).exit_code == 0
    metrics, manifest = (run_dir / "metrics.jsonl").read_bytes(), (run_dir / "manifest.json").read_bytes()
    changed = ["--set", "seed=4", "--set", "trainer.optimizer.name=adamw", "--set", "trainer.epochs=2"]
    refused = train(recipe, run_dir, "--resume", "latest", *changed)
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    assert "seed 3 -> 4" in refused.stderr and "trainer.optimizer.name 'adam' -> 'adamw'" in refused.stderr
    assert "--allow-changed" in refused.stderr and "trainer.epochs" not in refused.stderr.split("resume anyway")[0]
    # a refused resume writes nothing: no duplicate records, no new start in the manifest
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics and (run_dir / "manifest.json").read_bytes() == manifest
    allowed = train(recipe, run_dir, "--resume", "latest", *changed, "--allow-changed")
    assert allowed.exit_code == 0, allowed.stderr
    assert "--allow-changed: resuming with settings the run did not start with: seed 3 -> 4" in allowed.stderr
    assert [s for s, _ in ckpt.list_checkpoints(str(run_dir))][-1] == 12


def test_changed_settings_tell_list_changes_from_settings_another_version_lacks() -> None:
    saved = yaml.safe_dump({"seed": 1, "objectives": [{"type": "mae"}], "trainer": {"clip_grad": None}})
    current = yaml.safe_dump({"seed": 1, "objectives": [{"type": "mae"}, {"type": "infonce"}],
                              "trainer": {"clip_grad": None, "new_knob": 3}})
    changed, unrecorded = changed_settings(saved, current)
    assert [(k, repr(old), new) for k, old, new in changed] == [("objectives.1.type", "(absent)", "infonce")]
    assert unrecorded == ["trainer.new_knob"]
    with pytest.raises(UsageError, match=r"objectives.1.type \(absent\) -> 'infonce'"):
        review_changes(saved, current, uri="ckpt.pt", allow_changed=False)
    only_new = review_changes(saved, yaml.safe_dump({**yaml.safe_load(saved), "extra": {"x": 1}}),
                              uri="ckpt.pt", allow_changed=False)
    assert only_new.unrecorded == ["extra.x"] and "another cavkit version" in only_new.warnings(5)[0]


def test_last_good_checkpoint_after_exploding_weights_holds_finite_weights(tmp_path: Path) -> None:
    # step 3's loss is finite (0) but its gradient is NaN, so the update makes the weights NaN (as lr=inf does)
    data = h.tiny_recipe(objectives=[{"type": "engine_tiny_mse"}, {"type": "engine_nan_gradient_after", "calls": 2}],
                         trainer={"epochs": 1}, run={"checkpoint_every_steps": 1, "keep_last": 5})
    with pytest.raises(NonFiniteLossError) as info:
        h.make_trainer(data, str(tmp_path / "run"), tmp_path).fit()
    message = str(info.value)
    assert "non-finite by step 3" in message and "they were not saved" in message
    assert message.split("Last good checkpoint: ")[1].split(". ")[0].endswith("step-00000002.pt")
    saved = ckpt.list_checkpoints(str(tmp_path / "run"))
    assert [s for s, _ in saved] == [1, 2]
    for _, uri in saved:
        assert all(torch.isfinite(v).all() for v in ckpt.load_object(uri)["model"].values()), uri


# -- live metrics -----------------------------------------------------------------------------------
def test_metrics_are_appended_as_logged_and_each_step_appears_once_after_resume(tmp_path: Path) -> None:
    data = h.tiny_recipe(trainer={"epochs": 2, "log_every": 1}, run={"checkpoint_every_steps": 3})
    metrics = tmp_path / "run" / "metrics.jsonl"
    seen: dict[int, list[int]] = {}

    def look(trainer):
        seen[trainer.step] = [r["step"] for r in records(tmp_path / "run")]
        seen.setdefault(-1, [metrics.stat().st_ino])

    first = h.make_trainer(data, str(tmp_path / "run"), tmp_path / "a", on_step_end=[look, stop_at(5)])
    with pytest.raises(Stop):
        first.fit()
    assert seen[1] == [1] and seen[2] == [1, 2]  # before any checkpoint, as each step is logged
    assert metrics.stat().st_ino == seen[-1][0]  # appended to, never rewritten
    assert [r["step"] for r in records(tmp_path / "run")] == [1, 2, 3, 4, 5]
    (tmp_path / "run" / "metrics.jsonl").open("a").write('{"kind": "train", "st')  # a line torn by a kill
    h.make_trainer(data, str(tmp_path / "run"), tmp_path / "a").fit(resume="latest")  # from step 3
    logged = records(tmp_path / "run")
    assert [r["step"] for r in logged if r["kind"] == "train"] == list(range(1, 13))
    assert [r["epoch"] for r in logged if r["kind"] == "epoch"] == [1, 2]


# -- leftovers and I/O errors -----------------------------------------------------------------------
def test_orphaned_temporary_checkpoint_files_are_removed_on_the_next_start(tmp_path: Path) -> None:
    data = h.tiny_recipe(trainer={"epochs": 1})
    run_dir = tmp_path / "run"
    h.make_trainer(data, str(run_dir), tmp_path).fit()
    orphans = [run_dir / "checkpoints" / f".step-00000009.pt.{'a' * 32}.tmp", run_dir / f".metrics.jsonl.{'b' * 32}.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    keep = run_dir / "checkpoints" / "notes.tmp"  # not a cavkit temporary: left alone
    keep.write_text("mine")
    h.make_trainer(h.tiny_recipe(trainer={"epochs": 2}), str(run_dir), tmp_path).fit(resume="latest")
    assert not any(o.exists() for o in orphans) and keep.exists()


def test_disk_full_while_checkpointing_is_one_line_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    import cavkit.io

    real = cavkit.io._write_chunks

    def full(handle, data):
        if "/checkpoints/" in handle.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(handle, data)

    monkeypatch.setattr(cavkit.io, "_write_chunks", full)
    result = train(write_recipe(tmp_path, trainer={"epochs": 1}), tmp_path / "run")
    assert result.exit_code == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    path = tmp_path / "run" / "checkpoints" / "step-00000006.pt"
    cause = "No space left on device (ENOSPC); free some space or train into another --run-dir"
    assert error == [f"Error: cannot write {path}: {cause}"]
    assert "Traceback" not in result.stderr and not list((tmp_path / "run").rglob("*.tmp"))


def test_a_really_full_disk_is_one_line_and_no_traceback(tmp_path: Path, small_mount) -> None:
    run_dir = small_mount("size=16k") / "run"
    result = train(write_recipe(tmp_path, trainer={"epochs": 1}), run_dir)
    assert result.exit_code == 2, result.stderr
    assert f"cannot write {run_dir}" in result.stderr and "No space left on device (ENOSPC)" in result.stderr
    assert "Traceback" not in result.stderr and not list(run_dir.rglob("*.tmp"))


def test_a_read_only_run_directory_is_one_line_and_no_traceback(tmp_path: Path, read_only_dir) -> None:
    run_dir, cause = read_only_dir  # small_mount and read_only_dir: tests/conftest.py
    result = train(write_recipe(tmp_path, trainer={"epochs": 1}), run_dir)
    assert result.exit_code == 2, result.stderr
    assert f"cannot write {run_dir}" in result.stderr and cause in result.stderr and "Traceback" not in result.stderr

"""Preflight: `cavkit train` / `cavkit recipe check --inputs` list every missing input with its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from cavkit.engine.preflight import run_findings
from cavkit.recipe import load_recipe
from cavkit.testing import run_cli, tiny_model

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_sync_recipe_on_a_fresh_machine_lists_everything_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing prepared, nothing downloaded
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")  # online, weights:in-initial would be fetched at the start of training
    result = run_cli(["train", str(REPO / "recipes" / "sync_pretrain.yaml")])
    assert result.exit_code == 2
    err = result.stderr
    assert "Traceback" not in err and "6 problems before training (nothing was started)" in err
    assert "trainer.init: weights:in-initial is not in the cache and CAVKIT_OFFLINE is set" in err
    assert "`cavkit weights get in-initial` on a machine with network access" in err
    assert err.count("`cavkit prepare VIDEOS --out DIR --model cav_mae_sync") == 3
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_a_local_copy_of_a_published_file_that_is_missing_names_its_weights_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(["train", str(REPO / "recipes" / "sync_pretrain.yaml"), "--set", "trainer.init=pretrained/IN-initial.pth"])
    assert result.exit_code == 2
    err = result.stderr
    assert "Traceback" not in err and "problems before training (nothing was started)" in err
    for datafile in (
        "data/audioset/audioset_2m_cleaned.json",
        "data/audioset/audioset_eval_cleaned.json",
        "data/vggsound/vgg_test_5_per_class_for_retrieval.json",
    ):
        assert f"{datafile} does not exist" in err
    assert err.count("`cavkit prepare VIDEOS --out DIR --model cav_mae_sync") == 3
    assert "data.train.label_csv, data.val.label_csv: data/audioset/class_labels_indices.csv does not exist" in err
    assert "trainer.init: checkpoint pretrained/IN-initial.pth does not exist" in err
    assert "this is the published 'in-initial' (IN-initial.pth): use weights:in-initial" in err
    assert "`cavkit weights get in-initial` fetches it now" in err
    assert "timm:vit_base_patch16_224.mae" in err
    if not torch.cuda.is_available():
        assert "trainer.precision: fp16 needs a CUDA device" in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def _write_clips(root: Path, names: list[str], num_frames: int, missing: dict[str, str]) -> Path:
    """A datafile whose clips' files exist except ``missing[name]`` ('wav' or 'frame')."""
    entries = []
    for name in names:
        wav = root / "audio" / f"{name}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        if missing.get(name) != "wav":
            wav.write_bytes(b"RIFF")
        for i in range(num_frames):
            frame = root / "frames" / f"frame_{i}" / f"{name}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            if not (missing.get(name) == "frame" and i == num_frames - 1):
                frame.write_bytes(b"\xff\xd8")
        entries.append({"video_id": name, "wav": str(wav), "video_path": str(root / "frames"), "labels": "/m/a"})
    datafile = root / "datafile.json"
    datafile.write_text(json.dumps({"data": entries}))
    (root / "labels.csv").write_text("index,mid,display_name\n0,/m/a,A\n")
    return datafile


def _recipe(tmp_path: Path, datafile: Path, **trainer) -> Path:
    recipe = {
        "cavkit": 1,
        "model": tiny_model("cav_mae", audio_length=64),
        "objectives": [{"type": "mae", "weight": 1.0}],
        "data": {
            "train": {
                "type": "cav_mae",
                "datafile": str(datafile),
                "label_csv": str(datafile.parent / "labels.csv"),
                "num_frames": 2,
                "target_length": 64,
                "image_size": 32,
            }
        },
        "trainer": {"batch_size": 4, "precision": "fp32", **trainer},
        "run": {"dir": str(tmp_path / "run")},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_missing_clips_quick_samples_full_counts_every_one(tmp_path):
    names = [f"clip{i:03d}" for i in range(40)]
    missing = {"clip005": "wav", "clip017": "frame", "clip039": "wav"}  # 039: the last clip, always sampled
    datafile = _write_clips(tmp_path / "data", names, 2, missing)
    recipe = _recipe(tmp_path, datafile)
    quick = run_cli(["recipe", "check", str(recipe), "--inputs", "quick"])
    assert quick.exit_code == 2
    assert "of 9 sampled clips (of 40) have missing audio or frame files" in quick.stderr
    assert "clip039: " in quick.stderr and "--inputs full" in quick.stderr
    full = run_cli(["recipe", "check", str(recipe), "--inputs", "full"])
    assert full.exit_code == 2
    assert "3 of all 40 clips have missing audio or frame files, e.g. clip005: " in full.stderr
    assert f"clip017: {tmp_path / 'data' / 'frames' / 'frame_1' / 'clip017.jpg'}" in full.stderr
    assert "re-run `cavkit prepare`" in full.stderr
    assert run_cli(["recipe", "check", str(recipe)]).exit_code == 0  # without --inputs: the recipe alone


def test_batch_init_and_finished_run_problems_come_together(tmp_path, monkeypatch):
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")  # the published entry has a URL: offline, it cannot be fetched
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c"], 2, {})
    (tmp_path / "run" / "weights").mkdir(parents=True)
    (tmp_path / "run" / "weights" / "final.safetensors").write_bytes(b"x")
    recipe = _recipe(tmp_path, datafile, batch_size=8, init="weights:cav-mae-scale++")
    result = run_cli(["train", str(recipe), "--device", "cpu"])
    assert result.exit_code == 2 and "3 problems before training" in result.stderr
    assert (
        "trainer.batch_size: 8 per device x 1 device(s) = 8 clips per step, but data.train has 3 clips" in result.stderr
    )
    assert "--set trainer.batch_size=3" in result.stderr
    assert "weights:cav-mae-scale++ is not in the cache and CAVKIT_OFFLINE is set" in result.stderr
    assert "`cavkit weights get cav-mae-scale++` on a machine with network access" in result.stderr
    assert f"{tmp_path / 'run'} already holds a finished run (weights)" in result.stderr
    assert "--resume latest" in result.stderr and "--overwrite" in result.stderr


def test_complete_inputs_pass_and_timm_names_are_checked_without_download(tmp_path):
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    loaded = load_recipe(str(_recipe(tmp_path, datafile)), [])
    assert run_findings(loaded, run_dir=str(tmp_path / "run"), device="cpu", inputs="full") == []
    bad = load_recipe(str(_recipe(tmp_path, datafile, init="timm:vit_nonexistent_model")), [])
    findings = run_findings(bad, run_dir=str(tmp_path / "run"), device="cpu")
    assert [f.where for f in findings] == ["trainer.init"]
    assert "timm has no model 'vit_nonexistent_model'" in findings[0].message


@pytest.mark.parametrize("resume", ["latest", "nowhere/step-1.pt"])
def test_resume_targets_are_checked(tmp_path, resume):
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    loaded = load_recipe(str(_recipe(tmp_path, datafile)), [])
    findings = run_findings(loaded, run_dir=str(tmp_path / "run"), device="cpu", resume=resume)
    assert [f.where for f in findings] == ["--resume"]


def test_an_unfinished_run_is_named_and_overwrite_or_resume_lift_the_check(tmp_path):
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    loaded = load_recipe(str(_recipe(tmp_path, datafile)), [])
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step-00000004.pt").write_bytes(b"x")
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    run_dir = str(tmp_path / "run")
    (finding,) = run_findings(loaded, run_dir=run_dir, device="cpu")
    assert finding.message == f"{run_dir} already holds a run (checkpoints, metrics.jsonl)"
    assert run_findings(loaded, run_dir=run_dir, device="cpu", overwrite=True) == []
    assert run_findings(loaded, run_dir=run_dir, device="cpu", resume="latest") == []


def test_a_published_name_with_a_download_url_passes_without_touching_the_network(tmp_path, monkeypatch):
    """Online, an uncached built-in entry is fetchable (downloaded when the run starts); offline it is a problem."""
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    recipe = str(_recipe(tmp_path, datafile, init="weights:cav-mae-scale++"))
    online = run_cli(["recipe", "check", recipe, "--inputs", "quick"])
    assert online.exit_code == 0, online.stderr
    assert not (tmp_path / "cache").exists()  # nothing was fetched
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")
    offline = run_cli(["recipe", "check", recipe, "--inputs", "quick"])
    assert offline.exit_code == 2
    assert "trainer.init: weights:cav-mae-scale++ is not in the cache and CAVKIT_OFFLINE is set" in offline.stderr


def test_a_missing_published_file_is_recognised_by_its_name_but_not_by_a_bare_number():
    from cavkit.weights.availability import checkpoint_problems

    ((problem, fix),) = checkpoint_problems("ckpt/as_46.6.pth", exists=lambda _: False)
    assert problem == "checkpoint ckpt/as_46.6.pth does not exist"
    assert fix.startswith("this is the published 'cav-mae-as2m-audio' (as_46.6.pth): use weights:cav-mae-as2m-audio")
    ((_, fix),) = checkpoint_problems("runs/x/50.pth", exists=lambda _: False)  # also an ablation file's name
    assert fix == "give an existing checkpoint, weights:NAME (`cavkit weights list`) or an http(s) URL"


def _classifier_recipe(tmp_path: Path, datafile: Path, num_classes: int, **trainer) -> Path:
    """:func:`_recipe` with a classifier of ``num_classes`` classes, validated on the training data."""
    path = _recipe(tmp_path, datafile, **trainer)
    recipe = yaml.safe_load(path.read_text())
    recipe["model"] = tiny_model("classifier", num_classes=num_classes, audio_length=64)
    recipe["objectives"] = [{"type": "classification", "loss": "bce"}]
    recipe["data"]["val"] = dict(recipe["data"]["train"])  # the same label CSV for both roles
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_label_csv_is_opened_once_for_the_file_check_and_the_class_count(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileSystem

    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    labels = datafile.parent / "labels.csv"  # one class, used by data.train and data.val
    loaded = load_recipe(str(_classifier_recipe(tmp_path, datafile, num_classes=3)), [])
    opened: list[str] = []
    real_open = LocalFileSystem._open

    def counting_open(self, path, *args, **kwargs):
        opened.append(str(path))
        return real_open(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "_open", counting_open)
    findings = run_findings(loaded, run_dir=str(tmp_path / "run"), device="cpu")
    assert [f.where for f in findings] == ["data.train.label_csv", "data.val.label_csv"]
    assert all(f"the label file {labels} lists 1 classes but model.num_classes is 3" == f.message for f in findings)
    assert opened.count(str(labels)) == 1


def test_an_unreadable_label_csv_is_one_finding_and_no_class_count_guess(tmp_path):
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    (datafile.parent / "labels.csv").write_text("video_id,labels\nx,/m/a\n")  # a --labels file, not a label CSV
    loaded = load_recipe(str(_classifier_recipe(tmp_path, datafile, num_classes=3)), [])
    (finding,) = run_findings(loaded, run_dir=str(tmp_path / "run"), device="cpu")
    assert finding.where == "data.train.label_csv, data.val.label_csv"
    assert finding.message.startswith("unreadable: label CSV ") and "needs the header 'index,mid,display_name'" in finding.message


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_a_cuda_device_without_cuda_is_one_finding_worded_as_training_words_it(tmp_path, monkeypatch, device):
    from cavkit.devices import resolve_device
    from cavkit.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine has no CUDA
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    loaded = load_recipe(str(_recipe(tmp_path, datafile, precision="fp16")), [])
    (finding,) = run_findings(loaded, run_dir=str(tmp_path / "run"), device=device)
    with pytest.raises(UsageError) as raised:
        resolve_device(device)  # what training itself would stop with
    assert str(finding) == str(raised.value) == f"--device {device}: no CUDA device is available here; use --device cpu"


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_auto_and_cpu_on_a_machine_without_cuda_are_no_device_finding(tmp_path, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    assert run_findings(load_recipe(str(_recipe(tmp_path, datafile)), []), run_dir=str(tmp_path / "run"), device=device) == []
    fp16 = load_recipe(str(_recipe(tmp_path, datafile, precision="fp16")), [])
    (finding,) = run_findings(fp16, run_dir=str(tmp_path / "run"), device=device)
    assert finding.where == "trainer.precision" and finding.message.startswith("fp16 needs a CUDA device")


def test_train_with_device_cuda_without_cuda_reports_the_fix_and_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    datafile = _write_clips(tmp_path / "data", ["a", "b", "c", "d"], 2, {})
    result = run_cli(["train", str(_recipe(tmp_path, datafile)), "--device", "cuda"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "1 problem before training (nothing was started):\n  - --device cuda: no CUDA device is available here; use --device cpu" in result.stderr
    assert not (tmp_path / "run").exists()

"""The datasets reproduce the published loaders' outputs (fixtures/reference/data.*) to 1e-5."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from cavkit.data.configs import CavMaeDataConfig, SyncDataConfig
from cavkit.data.datasets import CavMaeDataset, SyncDataset

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def reference(reference_dir):
    meta = json.loads((reference_dir / "data.json").read_text())
    return meta["clips"], load_file(str(reference_dir / "data.safetensors")), reference_dir / "data"


def test_cav_mae_eval_items_match_published_loader(reference):
    clips, ref, data = reference
    ds = CavMaeDataset(CavMaeDataConfig(datafile=str(data / "data.json"), label_csv=str(data / "labels.csv"), mode="eval"))
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        clip = item["clip_id"]
        seen.add(clip)
        assert item["frame"] == 5
        assert item["audio"].shape == (1024, 128)
        torch.testing.assert_close(item["audio"], ref[f"cavmae.{clip}.fbank"], **TOL)
        torch.testing.assert_close(item["image"], ref[f"cavmae.{clip}.image"], **TOL)
        assert torch.equal(item["label"], ref[f"cavmae.{clip}.label"])
    assert seen == set(clips)


def test_sync_retrieval_items_match_published_loader(reference):
    clips, ref, data = reference
    ds = SyncDataset(SyncDataConfig(datafile=str(data / "data.json"), label_csv=str(data / "labels.csv"), mode="retrieval"))
    for i in range(len(ds)):
        item = ds[i]
        clip = item["clip_id"]
        assert item["audio"].shape == (16, 416, 128)
        torch.testing.assert_close(item["audio"], ref[f"sync.{clip}.fbank"], **TOL)
        torch.testing.assert_close(item["image"], ref[f"sync.{clip}.images"], **TOL)
        assert torch.equal(item["frame"], torch.arange(16))


def test_sync_train_and_eval_items_are_slices_of_retrieval(reference):
    _, ref, data = reference
    common = dict(datafile=str(data / "data.json"), label_csv=str(data / "labels.csv"))
    ev = SyncDataset(SyncDataConfig(mode="eval", **common))[0]
    full_audio = ref[f"sync.{ev['clip_id']}.fbank"]
    assert ev["frame"] == 8
    torch.testing.assert_close(ev["audio"], full_audio[8], **TOL)
    # one-frame items compute only their segment's rows; every frame of every clip (the 6 s clip's
    # late segments reach into the zero padding) must still match the published output
    for frame in range(16):
        ds = SyncDataset(SyncDataConfig(mode="eval", eval_frame=frame, **common))
        for i in range(len(ds)):
            item = ds[i]
            torch.testing.assert_close(item["audio"], ref[f"sync.{item['clip_id']}.fbank"][frame], **TOL)
    torch.manual_seed(0)
    tr = SyncDataset(SyncDataConfig(mode="train", **common))[0]
    torch.testing.assert_close(tr["audio"], full_audio[tr["frame"]], **TOL)
    torch.testing.assert_close(tr["image"], ref[f"sync.{tr['clip_id']}.images"][tr["frame"]], **TOL)


def test_items_collate_with_default_collate(reference):
    _, _, data = reference
    common = dict(datafile=str(data / "data.json"), label_csv=str(data / "labels.csv"))
    batch = next(iter(DataLoader(SyncDataset(SyncDataConfig(mode="retrieval", **common)), batch_size=2)))
    assert batch["audio"].shape == (2, 16, 416, 128) and batch["image"].shape == (2, 16, 3, 224, 224)
    assert batch["frame"].shape == (2, 16) and batch["label"].shape == (2, 2) and len(batch["clip_id"]) == 2
    batch = next(iter(DataLoader(CavMaeDataset(CavMaeDataConfig(mode="train", **common)), batch_size=3)))
    assert batch["audio"].shape == (3, 1024, 128) and batch["image"].shape == (3, 3, 224, 224)
    assert batch["frame"].shape == (3,) and batch["skipped"].tolist() == [0, 0, 0]

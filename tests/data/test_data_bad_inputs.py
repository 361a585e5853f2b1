"""Bad data is never replaced by zeros: a clear DataError naming clip and file, or a counted skip."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, WeightedRandomSampler

from cavkit.data import datafile as df
from cavkit.data.configs import CavMaeDataConfig, SyncDataConfig
from cavkit.data.datasets import CavMaeDataset, SyncDataset
from cavkit.data.fbank import NORM_MEAN, NORM_STD
from cavkit.data.images import encode_jpeg
from cavkit.data.video import wav_bytes
from cavkit.errors import DataError
from cavkit.testing import run_cli

IDS = ["a", "b", "c", "d"]
LABELS = {"a": "/m/x", "b": "/m/x,/m/y", "c": "/m/y", "d": "/m/x"}


def make_data(root: str, num_frames: int = 16, seconds: float = 1.0) -> str:
    """Four clips (wav + frames) under ``root`` (any fsspec URI); returns the datafile URI."""
    rng = np.random.default_rng(0)
    for vid in IDS:
        samples = (rng.normal(0, 0.1, int(16000 * seconds)) * 32767).astype(np.int16)
        with fsspec.open(f"{root}/audio/{vid}.wav", "wb") as f:
            f.write(wav_bytes(samples))
        for i in range(num_frames):
            pixels = np.full((32, 32, 3), (i * 15, IDS.index(vid) * 60, 100), dtype=np.uint8)
            with fsspec.open(f"{root}/frames/frame_{i}/{vid}.jpg", "wb") as f:
                f.write(encode_jpeg(Image.fromarray(pixels)))
    entries = [{"video_id": v, "wav": f"audio/{v}.wav", "video_path": "frames", "labels": LABELS[v]} for v in IDS]
    with fsspec.open(f"{root}/datafile.json", "w") as f:
        json.dump({"data": entries}, f)
    with fsspec.open(f"{root}/labels.csv", "w") as f:
        f.write('index,mid,display_name\n0,/m/x,"X"\n1,/m/y,"Y"\n')
    return f"{root}/datafile.json"


@pytest.fixture
def data(tmp_path):
    return make_data(str(tmp_path)), tmp_path


def cav(datafile, **kw):
    return CavMaeDataset(CavMaeDataConfig(datafile=datafile, label_csv=datafile.replace("datafile.json", "labels.csv"), image_size=32, **kw))


def sync(datafile, **kw):
    return SyncDataset(SyncDataConfig(datafile=datafile, image_size=32, **kw))


@pytest.mark.parametrize("damage, words", [("missing", "is missing"), ("empty", "empty file"), ("corrupt", "unusable")])
def test_bad_audio_raises_naming_clip_and_file(data, damage, words):
    datafile, root = data
    wav = root / "audio" / "b.wav"
    if damage == "missing":
        wav.unlink()
    elif damage == "empty":
        wav.write_bytes(b"")
    else:
        wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + b"\x07" * 300)
    for ds in (cav(datafile, mode="eval"), sync(datafile, mode="retrieval")):
        with pytest.raises(DataError) as info:
            ds[1]
        assert "'b'" in str(info.value) and str(wav) in str(info.value) and words in str(info.value)


def test_too_short_audio_raises(data):
    datafile, root = data
    (root / "audio" / "c.wav").write_bytes(wav_bytes(np.zeros(300, dtype=np.int16)))
    with pytest.raises(DataError, match="too short"):
        cav(datafile, mode="eval")[2]


def test_corrupt_or_missing_frame_raises(data):
    datafile, root = data
    (root / "frames" / "frame_8" / "a.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(DataError, match=r"clip 'a': frame file .*frame_8.*a\.jpg is unusable"):
        sync(datafile, mode="eval")[0]
    (root / "frames" / "frame_3" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"clip 'b': frame file .*frame_3.*b\.jpg is missing"):
        sync(datafile, mode="retrieval")[1]


def test_missing_frame_falls_back_to_a_lower_index_as_published(data):
    datafile, root = data
    (root / "frames" / "frame_5" / "a.jpg").unlink()
    (root / "frames" / "frame_4" / "a.jpg").unlink()
    item = cav(datafile, mode="eval")[0]
    assert item["frame"] == 3
    with pytest.raises(DataError, match="frame_5"):
        cav(datafile, mode="eval", frame_fallback=False)[0]


def test_skip_bad_clips_drops_and_counts(data):
    datafile, root = data
    (root / "audio" / "b.wav").unlink()
    (root / "audio" / "c.wav").write_bytes(b"")
    ds = cav(datafile, mode="eval", skip_bad_clips=True)
    items = [ds[i] for i in range(len(ds))]
    assert [it["clip_id"] for it in items] == ["a", "d", "d", "d"]
    assert [it["skipped"] for it in items] == [0, 2, 1, 0]
    assert ds.skipped_clips == 3 and ds.reset_skipped() == 3 and ds.skipped_clips == 0
    assert all(it["audio"].abs().sum() > 0 for it in items)
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert int(batch["skipped"].sum()) == 3  # the per-item count survives worker processes


def test_every_clip_bad_is_an_error(data):
    datafile, root = data
    for vid in IDS:
        (root / "audio" / f"{vid}.wav").unlink()
    with pytest.raises(DataError, match="every clip is unusable"):
        sync(datafile, mode="train", skip_bad_clips=True)[0]


def test_datafile_and_label_errors(tmp_path, data):
    with pytest.raises(DataError, match="does not exist"):
        cav(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not a datafile JSON"):
        CavMaeDataset(CavMaeDataConfig(datafile=str(tmp_path / "bad.json")))
    datafile, root = data
    (root / "labels.csv").write_text("index,mid,display_name\n0,/m/x,X\n")
    with pytest.raises(DataError, match=r"clip 'b': label '/m/y' is not in the label CSV"):
        cav(datafile, mode="eval")  # found when the dataset is built, not mid-epoch


def test_memory_filesystem_and_sample_weights():
    datafile = make_data("memory://bad-inputs-test", num_frames=10)
    ds = cav(datafile, mode="train", mixup=1.0, label_smoothing=0.1, freqm=24, timem=40, noise=True)
    weights = ds.sample_weights()
    x, y = 1000 / 3.01, 1000 / 2.01
    assert weights.tolist() == pytest.approx([x, x + y, y, x])
    df.write_weights("memory://bad-inputs-test/datafile_weight.csv", weights.numpy())
    again = cav(datafile, weights_file="memory://bad-inputs-test/datafile_weight.csv").sample_weights()
    assert torch.allclose(weights, again)
    sampler = WeightedRandomSampler(weights, len(weights), replacement=True)
    batch = next(iter(DataLoader(ds, batch_size=4, sampler=sampler)))
    assert batch["audio"].shape == (4, 1024, 128) and batch["image"].shape == (4, 3, 32, 32)
    # mixup with smoothing: every class >= ls/C, the total mass is ls + (1 - ls) * (labels per clip, mixed)
    assert (batch["label"] >= 0.05 - 1e-6).all()


def test_specaugment_masks_become_the_padding_value(data):
    datafile, _ = data
    torch.manual_seed(0)
    item = cav(datafile, mode="train", freqm=48, timem=192)[0]
    zero = (0 - NORM_MEAN) / NORM_STD
    assert torch.isclose(item["audio"][-10:], torch.tensor(zero)).all()  # 1 s clip: zero padding
    masked_bins = torch.isclose(item["audio"][:90], torch.tensor(zero)).all(0)
    masked_rows = torch.isclose(item["audio"][:90], torch.tensor(zero)).all(1)
    assert masked_bins.any() or masked_rows.any()


def test_data_check_counts_missing_and_unreadable(data):
    datafile, root = data
    (root / "audio" / "a.wav").unlink()
    (root / "audio" / "b.wav").write_bytes(b"garbage")
    (root / "frames" / "frame_12" / "c.jpg").unlink()
    (root / "frames" / "frame_2" / "d.jpg").write_bytes(b"")
    result = run_cli(["data", "check", datafile, "--json"])
    report = json.loads(result.stdout)
    assert report["audio"] == {"ok": 2, "missing": 1, "unreadable": 1}
    assert report["frames"] == {"ok": 62, "missing": 1, "empty": 1}
    assert report["usable_cav_mae"] == 1 and report["usable_cav_mae_sync"] == 0
    assert run_cli(["data", "check", datafile, "--strict"]).exit_code == 1

"""Shards as outputs (file permissions) and as inputs of `cavkit embed` / `cavkit inpaint`."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from cavkit.data.images import encode_jpeg
from cavkit.data.shards import write_shards
from cavkit.data.video import wav_bytes
from cavkit.testing import run_cli, save_model_weights, tiny_model

IDS = ["clip_a", "clip_b", "clip_c"]
DATA = ["--dataset-type", "shards", "--data", "image_size=32"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    """Random weights (seed 0) of a tiny CAV-MAE Sync model in the cavkit format (recipe in the metadata)."""
    return save_model_weights(tiny_model("cav_mae_sync"), tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture
def shards(tmp_path):
    """Three clips (1 s of noise, 4 frames) packed one per shard, with the usual umask 022."""
    root = tmp_path / "clips"
    entries = []
    for n, vid in enumerate(IDS):
        (root / "audio").mkdir(parents=True, exist_ok=True)
        (root / "audio" / f"{vid}.wav").write_bytes(wav_bytes((np.random.default_rng(n).normal(0, 0.1, 16000) * 32767).astype(np.int16)))
        for i in range(4):
            (root / "frames" / f"frame_{i}").mkdir(parents=True, exist_ok=True)
            (root / "frames" / f"frame_{i}" / f"{vid}.jpg").write_bytes(encode_jpeg(Image.new("RGB", (32, 32), (60 * n, 40 * i, 0))))
        entries.append({"video_id": vid, "wav": f"audio/{vid}.wav", "video_path": "frames", "labels": ""})
    (root / "datafile.json").write_text(json.dumps({"data": entries}))
    old = os.umask(0o022)
    try:
        write_shards(str(root / "datafile.json"), str(tmp_path / "shards"), shard_size=1, num_frames=4)
    finally:
        os.umask(old)
    return tmp_path / "shards"


def test_shards_get_the_same_permissions_as_other_outputs(shards):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in shards.iterdir()}
    assert modes == {"shard-000000.tar": 0o644, "shard-000001.tar": 0o644, "shard-000002.tar": 0o644, "index.json": 0o644}
    assert not list(shards.glob(".*"))  # no temporary files left


def test_embed_and_inpaint_read_shards_without_index(shards, tiny_weights, tmp_path):
    (shards / "index.json").unlink()
    urls = f"urls=[{shards}/shard-*.tar]"
    out = tmp_path / "emb.npz"
    result = run_cli(["embed", "--checkpoint", tiny_weights, *DATA, "--data", urls, "--data", "layout=sync",
                      "--data", "segment_length=32", "--data", "spectrogram_length=128", "--out", str(out)])
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "wrote 3 clips" in result.stdout
    with np.load(out) as arrays:
        assert arrays["audio_pooled"].shape == (3, 4, 32) and list(arrays["clip_ids"]) == IDS

    pictures = tmp_path / "pictures"
    common = ["inpaint", "--checkpoint", tiny_weights, *DATA, "--data", urls, "--data", "target_length=32",
              "--pixel-targets", "--out", str(pictures)]
    result = run_cli([*common, "--num-clips", "2"])
    assert result.exit_code == 0, result.stderr[-3000:]
    assert sorted(p.name for p in pictures.glob("*.png")) == [f"{vid}_unstructured_a0.75_v0.75.png" for vid in IDS[:2]]
    result = run_cli([*common, "--clip", "clip_c"])
    assert result.exit_code == 0, result.stderr[-3000:]
    assert (pictures / "clip_c_unstructured_a0.75_v0.75.png").exists()
    result = run_cli([*common, "--clip", "clip_z"])
    assert result.exit_code == 2 and "clip id(s) not in the dataset: clip_z" in result.stderr
    assert "Traceback" not in result.stderr

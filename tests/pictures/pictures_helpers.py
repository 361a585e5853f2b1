"""Shared settings of the picture tests (a module with a unique name: every test folder has a conftest)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cavkit.data.video import wav_bytes

SMALL = {"image_size": 32, "audio_length": 128, "segment_length": 32, "num_frames": 4}


def synthetic_args(**extra) -> list[str]:
    """`--dataset-type synthetic --data k=v ...` for the tiny model's clips (test split)."""
    params = {**SMALL, "layout": "sync", "split": "test", "num_clips": 6, **extra}
    return ["--dataset-type", "synthetic", *[f"--data={k}={v}" for k, v in params.items()]]


def write_clips(root, count=3, frames=4):
    """``count`` clips as a datafile (spec §6.1) under ``root``: 1.5 s sine wavs and 32x32 frame JPEGs."""
    entries = []
    for c in range(count):
        vid = f"vid{c}"
        t = np.arange(int(1.5 * 16000)) / 16000
        pcm = (0.3 * np.sin(2 * np.pi * (300 + 200 * c) * t) * 32767).astype(np.int16)
        (root / f"{vid}.wav").write_bytes(wav_bytes(pcm))
        for k in range(frames):
            folder = root / "frames" / f"frame_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.full((32, 32, 3), 40 * c, np.uint8)
            pixels[8 * (k % 4) : 8 * (k % 4) + 8, 8:16] = 255
            Image.fromarray(pixels).save(folder / f"{vid}.jpg", quality=90)
        entries.append({"video_id": vid, "wav": f"{vid}.wav", "video_path": "frames", "labels": ""})
    datafile = root / "clips.json"
    datafile.write_text(json.dumps({"data": entries}))
    return str(datafile)

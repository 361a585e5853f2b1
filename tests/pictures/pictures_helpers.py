"""Shared settings of the picture tests (a module with a unique name: every test folder has a conftest)."""

from __future__ import annotations

SMALL = {"image_size": 32, "audio_length": 128, "segment_length": 32, "num_frames": 4}


def synthetic_args(**extra) -> list[str]:
    """`--dataset-type synthetic --data k=v ...` for the tiny model's clips (test split)."""
    params = {**SMALL, "layout": "sync", "split": "test", "num_clips": 6, **extra}
    return ["--dataset-type", "synthetic", *[f"--data={k}={v}" for k, v in params.items()]]

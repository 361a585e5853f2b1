"""Parameters of the ``trajectory_clips`` dataset (attrs; no torch import)."""

from __future__ import annotations

from typing import Literal

import attrs

from cavkit.config import in_range, param


@attrs.frozen(kw_only=True)
class TrajectoryClipsConfig:
    """The in-memory clips of a training-trajectory fixture (``cavkit verify trajectory``)."""

    fixture: str = param(help="trajectory json (NAME.json beside NAME.safetensors)")
    split: Literal["train", "val"] = param("train", help="train: every item with the training targets; val: the validation items")
    label_smoothing: float = param(
        0.0, help="label smoothing applied to the recovered hard labels (published loader: negatives ls/C, positives 1-ls)",
        validator=in_range(0.0, 1.0),
    )

"""What a replay feeds the engine: the fixture's clips, its batch order and its masking noise.

* :class:`TrajectoryClips` is the ``trajectory_clips`` dataset (built from the recipe like any
  other): items ``{"audio": [T, F], "image": [3, H, W], "label": [C]}`` in float32. Fine-tuning
  targets are rebuilt from the recorded ones with cavkit's own label smoothing
  (:func:`cavkit.data.datafile.label_vector`), so the published loader's smoothing is checked too.
* :class:`RecordedOrder` replaces the trainer's :class:`~cavkit.engine.data.GlobalBatchPlan`
  (``trainer.plan``): epoch ``e`` yields the items of ``order[e]`` step after step.
* :class:`RecordedNoise` replaces the trainer's :class:`~cavkit.engine.noise.MaskingNoise`
  (``trainer.noise``): step ``s`` masks with ``noise.train.*[s]``, the ``k``-th validation batch
  with ``noise.val.*[k]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cavkit.engine.data import GlobalBatchPlan
from cavkit.engine.noise import MaskingNoise
from cavkit.verify.fixture import FixtureError, Trajectory


def hard_labels(recorded: torch.Tensor) -> torch.Tensor:
    """0/1 labels ``[N, C]`` behind smoothed targets: the entries at a row's maximum (none if the row is flat)."""
    top = recorded.max(dim=1, keepdim=True).values
    flat = top == recorded.min(dim=1, keepdim=True).values
    return ((recorded == top) & ~flat).float()


def smoothed_targets(hard: torch.Tensor, smoothing: float) -> torch.Tensor:
    """The published loader's targets for 0/1 labels ``[N, C]`` via :func:`cavkit.data.datafile.label_vector`."""
    from cavkit.data.datafile import label_vector

    index = {str(c): c for c in range(hard.shape[1])}
    rows = [label_vector(tuple(str(int(c)) for c in row.nonzero().flatten()), index, smoothing) for row in hard]
    return torch.from_numpy(np.stack(rows))


class TrajectoryClips(Dataset):
    """The fixture's clips for ``split`` (see the module docstring)."""

    def __init__(self, fixture: str, split: str = "train", label_smoothing: float = 0.0):
        traj = Trajectory(fixture)
        self.audio, self.image = traj.inputs()
        self.labels: torch.Tensor | None = None
        self.recorded_labels: torch.Tensor | None = None
        if split == "train":
            self.items = list(range(self.audio.shape[0]))
            if traj.has("label.train"):
                self.recorded_labels = traj.tensor("label.train").float()
                if float(traj.arg("mixup", 0.0) or 0.0) > 0:
                    self.labels = self.recorded_labels  # mixed targets: nothing to rebuild
                else:
                    self.labels = smoothed_targets(hard_labels(self.recorded_labels), label_smoothing)
        else:
            items = (traj.meta.get("data") or {}).get("validation_items")
            if traj.has("label.val"):
                self.labels = traj.tensor("label.val").float()
                items = items if items is not None else list(range(self.labels.shape[0]))
            if items is None:
                raise FixtureError(f"{traj.name}: no data.validation_items and no label.val: the validation items are unknown")
            self.items = list(items)
        if self.labels is not None and self.labels.shape[0] != len(self.items):
            raise FixtureError(f"{traj.name}: {self.labels.shape[0]} {split} targets for {len(self.items)} items")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        out = {"audio": self.audio[item], "image": self.image[item]}
        if self.labels is not None:
            out["label"] = self.labels[index]
        return out


def build_trajectory_clips(config, **_: Any) -> TrajectoryClips:
    return TrajectoryClips(config.fixture, config.split, config.label_smoothing)


class RecordedOrder(GlobalBatchPlan):
    """The fixture's batch order as a global-batch plan (one device, no accumulation)."""

    def __init__(self, order: list[list[list[int]]], num_items: int, seed: int = 0):
        super().__init__(num_items, len(order[0][0]), seed)
        self.order = order
        self.steps_per_epoch = len(order[0])
        bad = sorted({i for epoch in order for batch in epoch for i in batch if not 0 <= i < num_items})
        if bad:
            raise FixtureError(f"'order' names items {bad[:5]} but the fixture holds {num_items} clips")

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch >= len(self.order):
            raise FixtureError(f"the engine asked for epoch {epoch + 1}; the fixture records {len(self.order)}")
        return torch.tensor([i for batch in self.order[epoch] for i in batch], dtype=torch.long)


class RecordedNoise(MaskingNoise):
    """Replays ``noise.train.{audio,image}`` ``[steps, B, L]`` and ``noise.val.*`` ``[batches, B, L]``."""

    def __init__(self, train: tuple[torch.Tensor, torch.Tensor] | None, val: tuple[torch.Tensor, torch.Tensor] | None,
                 global_batch: int):
        super().__init__(seed=0, global_batch=global_batch)
        self.train, self.val = train, val
        self.eval_calls = 0

    @classmethod
    def from_fixture(cls, traj: Trajectory) -> RecordedNoise:
        def pair(split: str):
            keys = (f"noise.{split}.audio", f"noise.{split}.image")
            return tuple(traj.tensor(k).float() for k in keys) if all(traj.has(k) for k in keys) else None

        return cls(pair("train"), pair("val"), traj.batch_size)

    def probe(self, model, batch, device) -> None:
        super().probe(model, batch, device)
        if self.token_counts is None or self.train is None:
            if self.token_counts is not None:
                raise FixtureError("the model masks its inputs but the fixture records no noise.train.audio/image")
            return
        recorded = (self.train[0].shape[-1], self.train[1].shape[-1])
        if tuple(self.token_counts) != recorded:
            raise FixtureError(f"the model masks {self.token_counts} (audio, visual) tokens; the fixture's noise has {recorded}")

    def step_noise(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.token_counts is None:
            return None
        if step >= self.train[0].shape[0]:
            raise FixtureError(f"step {step} has no recorded masking noise (the fixture records {self.train[0].shape[0]})")
        return self.train[0][step], self.train[1][step]

    def eval_noise(self, index: int, size: int, *, rank: int, world_size: int, device: torch.device):
        if self.token_counts is None:
            return None
        if self.val is None or self.eval_calls >= self.val[0].shape[0]:
            raise FixtureError(f"validation batch {self.eval_calls} has no recorded masking noise (noise.val.*)")
        k, self.eval_calls = self.eval_calls, self.eval_calls + 1
        return self.val[0][k][:size].to(device), self.val[1][k][:size].to(device)

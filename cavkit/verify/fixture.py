"""Reading a training-trajectory fixture: ``NAME.json`` beside ``NAME.safetensors``.

The format (``../shared/fixtures/training/README.md``) records what the published loops
(``traintest_cavmae.py`` pretraining, ``traintest_ft.py`` fine-tuning) did step by step. Only the
structured json fields are used: ``constructor`` (the published model's keyword arguments),
``args`` (the run script's argparse namespace), ``optimizer`` (betas, eps, weight decay),
``order`` (dataset items per epoch and step), ``steps`` (per-step losses and learning rates),
``data`` (where the inputs are and how they are scaled), ``tolerance.recommended``. Tensors:
``init.module.*`` / ``final.module.*`` (upstream state dicts), ``noise.train.{audio,image}``
``[steps, B, L]``, ``data.audio_q`` / ``data.image_q`` (int8, divided by the json's scale),
``label.train`` / ``label.val``, ``trace.param_norm`` ``[steps, P]``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch

from cavkit.checkpoints.keys import DATAPARALLEL_PREFIX
from cavkit.errors import UsageError
from cavkit.safetensors_io import SafetensorsFileError, read_safetensors, read_tensor_names

#: the issue's tolerance when a fixture records none (losses relative, weights absolute)
DEFAULT_TOLERANCE = {"loss_rtol": 1e-5, "c_acc": "exact", "final_weights_atol": 1e-4}


class FixtureError(UsageError):
    """A trajectory fixture that is missing, malformed, or records a run cavkit cannot replay."""


def _scale(text: str) -> float | None:
    """The divisor in ``"data.audio_q.float() / 16 ..."`` or ``"... (divide by 16)"``."""
    match = re.search(r"/\s*([0-9]+(?:\.[0-9]+)?)", text) or re.search(r"divide by ([0-9]+(?:\.[0-9]+)?)", text)
    return float(match.group(1)) if match else None


class Trajectory:
    """One fixture. ``kind`` is ``"pretrain"`` (``CAVMAE``) or ``"finetune"`` (``CAVMAEFT``)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise FixtureError(f"{path}: no such trajectory fixture (expected NAME.json beside NAME.safetensors)")
        try:
            with open(self.path, encoding="utf-8") as fh:
                self.meta: dict[str, Any] = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FixtureError(f"{path}: not a readable trajectory json: {exc}") from None
        if not isinstance(self.meta, dict):
            raise FixtureError(f"{path}: expected a json object with constructor, args, order and steps")
        for key, kind in (("constructor", dict), ("args", dict), ("order", list), ("steps", list)):
            if not isinstance(self.meta.get(key), kind):
                raise FixtureError(f"{path}: field {key!r} is missing or not a {kind.__name__}; is this a trajectory fixture?")
        self.tensors_path = self.path[: -len(".json")] + ".safetensors" if self.path.endswith(".json") else self.path + ".safetensors"
        if not os.path.isfile(self.tensors_path):
            raise FixtureError(f"{path}: its tensors {self.tensors_path} are missing")
        self._check_order()

    # -- structured fields ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def constructor(self) -> dict[str, Any]:
        return self.meta["constructor"]

    @property
    def args(self) -> dict[str, Any]:
        return self.meta["args"]

    @property
    def optimizer(self) -> dict[str, Any]:
        return self.meta.get("optimizer") or {}

    @property
    def order(self) -> list[list[list[int]]]:
        return self.meta["order"]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.meta["steps"]

    @property
    def kind(self) -> str:
        finetune = "label_dim" in self.constructor or str(self.args.get("model", "")).endswith("-ft")
        return "finetune" if finetune else "pretrain"

    @property
    def batch_size(self) -> int:
        return len(self.order[0][0])

    @property
    def tolerance(self) -> dict[str, Any]:
        recorded = (self.meta.get("tolerance") or {}).get("recommended") or {}
        return {**DEFAULT_TOLERANCE, **recorded}

    def arg(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        if key not in self.args:
            if required:
                raise FixtureError(f"{self.name}: args.{key} is missing (the run script's argument)")
            return default
        return self.args[key]

    def _check_order(self) -> None:
        order, steps = self.order, self.steps
        if not order or not all(isinstance(e, list) and e for e in order):
            raise FixtureError(f"{self.name}: 'order' must list, per epoch, the items of every step")
        sizes = {len(batch) for epoch in order for batch in epoch}
        per_epoch = {len(epoch) for epoch in order}
        if len(sizes) != 1 or len(per_epoch) != 1:
            raise FixtureError(
                f"{self.name}: 'order' has batches of sizes {sorted(sizes)} and epochs of {sorted(per_epoch)} steps; "
                "the published loaders drop the last partial batch, so every step should have the same size"
            )
        if len(steps) != sum(len(e) for e in order):
            raise FixtureError(f"{self.name}: {len(steps)} step records but 'order' lists {sum(len(e) for e in order)} steps")

    # -- tensors -------------------------------------------------------------------------------------
    @cached_property
    def _keys(self) -> set[str]:
        try:
            return set(read_tensor_names(self.tensors_path))
        except SafetensorsFileError as exc:
            raise FixtureError(f"{self.tensors_path}: not a readable safetensors file: {exc}") from None

    @staticmethod
    def _read(path: str, select: Callable[[str], bool]) -> dict[str, torch.Tensor]:
        """The tensors of ``path`` whose names ``select`` accepts (the others are not loaded)."""
        try:
            return read_safetensors(path, select=select)[0]
        except SafetensorsFileError as exc:
            raise FixtureError(f"{path}: not a readable safetensors file: {exc}") from None

    def check_tensors(self) -> None:
        """Fail before training when a tensor the replay needs is missing."""
        for prefix in ("init", "final"):
            if not any(k.startswith(f"{prefix}.{DATAPARALLEL_PREFIX}") for k in self._keys):
                raise FixtureError(f"{self.tensors_path}: no {prefix}.{DATAPARALLEL_PREFIX}* tensors (the {prefix} state dict)")
        if self.kind == "pretrain":
            for key in ("noise.train.audio", "noise.train.image"):
                if not self.has(key):
                    raise FixtureError(f"{self.tensors_path}: {key} is missing (the masking noise of every training step)")
        elif not self.has("label.train"):
            raise FixtureError(f"{self.tensors_path}: label.train is missing (the fine-tuning targets)")

    def has(self, key: str) -> bool:
        return key in self._keys

    def tensor(self, key: str, path: str | None = None) -> torch.Tensor:
        path = path or self.tensors_path
        found = self._read(path, lambda name: name == key)
        if key not in found:
            raise FixtureError(f"{path}: tensor {key!r} is missing")
        return found[key]

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        """An upstream state dict stored as ``<prefix>.module.<key>`` (the ``module.`` prefix removed)."""
        head = f"{prefix}.{DATAPARALLEL_PREFIX}"
        out = {k[len(head) :]: v for k, v in self._read(self.tensors_path, lambda k: k.startswith(head)).items()}
        if not out:
            raise FixtureError(f"{self.tensors_path}: no {head}* tensors (the state dict {prefix!r})")
        return out

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(audio [N, T, F], image [N, 3, H, W])`` in float32, as the published loop was fed."""
        return self._input("audio"), self._input("image")

    def _input(self, what: str) -> torch.Tensor:
        data = self.meta.get("data") or {}
        key = f"data.{what}_q"
        described = str(data.get(what) or data.get("inputs") or "")
        path = self.tensors_path
        if not self.has(key):
            named = re.search(r"([\w.-]+\.safetensors)", described)
            if not named:
                raise FixtureError(f"{self.name}: no {key} tensor and data.inputs names no .safetensors file holding it")
            path = os.path.join(os.path.dirname(self.path), named.group(1))
            if not os.path.isfile(path):
                raise FixtureError(f"{self.name}: the inputs live in {path} (data.inputs), which is missing")
        raw = self.tensor(key, path)
        if raw.is_floating_point():
            return raw.float()
        scale = _scale(described)
        if scale is None:
            raise FixtureError(f"{self.name}: {key} is {raw.dtype} but data.{what} / data.inputs states no divisor")
        return raw.float() / scale

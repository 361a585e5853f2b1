"""The run directory (any fsspec URI) and rank-0 logging: manifest, resolved recipe, scalars, TensorBoard.

Layout::

    <run>/recipe.yaml          the resolved recipe (defaults filled in)
    <run>/manifest.json        cavkit, plugin, torch and python versions; devices; starts and resumes
    <run>/metrics.jsonl        one JSON line per logged step, validation and evaluation
    <run>/checkpoints/         step-<N>.pt (atomic, keep_last)
    <run>/weights/             final.safetensors, averaged.safetensors
    <run>/tensorboard/         event files (written locally, uploaded for remote run directories)

TensorBoard's writer needs a local folder: for a remote run directory the events go to a local
temporary folder that :meth:`RunLogger.sync` copies to ``<run>/tensorboard`` (at checkpoints and
at the end). Only rank 0 creates a :class:`RunLogger`; other ranks get :class:`NullLogger`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
from typing import Any

import fsspec

from cavkit.engine.checkpoint import join, write_bytes_atomic


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_json(uri: str) -> Any:
    try:
        with fsspec.open(uri, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


class NullLogger:
    """What ranks other than 0 get: every method does nothing."""

    def scalars(self, step: int, values: dict[str, float]) -> None: ...
    def image(self, step: int, tag: str, image: Any) -> None: ...
    def record(self, kind: str, step: int, values: dict[str, Any]) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class RunLogger(NullLogger):
    """Rank-0 writer of the manifest, recipe, ``metrics.jsonl`` and TensorBoard events."""

    def __init__(self, run_dir: str, *, tensorboard: bool = True):
        self.run_dir = run_dir
        fs, path = fsspec.core.url_to_fs(run_dir)
        fs.makedirs(path, exist_ok=True)
        self._metrics_lines: list[str] = []
        self._writer = None
        self._tb_local: str | None = None
        self._tb_temp = False
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            if is_local(run_dir):
                self._tb_local = os.path.join(local_path(run_dir), "tensorboard")
            else:
                self._tb_local = tempfile.mkdtemp(prefix="cavkit-tb-")
                self._tb_temp = True
            self._writer = SummaryWriter(self._tb_local)

    # -- manifest and recipe ---------------------------------------------------------------------
    def write_start(self, *, recipe_yaml: str, versions: dict[str, str], world_size: int, device: str, resumed_from: str | None, argv: list[str]) -> None:
        import torch

        write_bytes_atomic(join(self.run_dir, "recipe.yaml"), recipe_yaml.encode("utf-8"))
        manifest_uri = join(self.run_dir, "manifest.json")
        manifest = _read_json(manifest_uri) or {"created": _now(), "starts": []}
        manifest.update(
            {
                "versions": dict(sorted(versions.items())),
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
            }
        )
        manifest["starts"].append(
            {"time": _now(), "world_size": world_size, "device": device, "resumed_from": resumed_from, "argv": argv}
        )
        write_bytes_atomic(manifest_uri, json.dumps(manifest, indent=2).encode("utf-8"))
        if self._writer is not None:
            self._writer.add_text("recipe", "```yaml\n" + recipe_yaml + "\n```", 0)

    # -- scalars ---------------------------------------------------------------------------------
    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)
        self.record("train", step, values)

    def image(self, step: int, tag: str, image: Any) -> None:
        if self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        self._metrics_lines.append(json.dumps({"kind": kind, "step": step, "time": _now(), **values}))
        if kind != "train" and self._writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)

    def sync(self) -> None:
        """Append buffered metrics to ``metrics.jsonl``; upload TensorBoard events for remote runs."""
        if self._metrics_lines:
            fs, path = fsspec.core.url_to_fs(join(self.run_dir, "metrics.jsonl"))
            old = fs.cat_file(path).decode("utf-8") if fs.exists(path) else ""
            write_bytes_atomic(join(self.run_dir, "metrics.jsonl"), (old + "\n".join(self._metrics_lines) + "\n").encode("utf-8"))
            self._metrics_lines = []
        if self._writer is not None:
            self._writer.flush()
            if self._tb_temp and self._tb_local:
                fs, path = fsspec.core.url_to_fs(join(self.run_dir, "tensorboard"))
                fs.makedirs(path, exist_ok=True)
                for name in os.listdir(self._tb_local):
                    fs.put_file(os.path.join(self._tb_local, name), f"{path}/{name}")

    def close(self) -> None:
        self.sync()
        if self._writer is not None:
            self._writer.close()
            if self._tb_temp and self._tb_local:
                shutil.rmtree(self._tb_local, ignore_errors=True)
            self._writer = None

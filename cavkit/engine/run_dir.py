"""The run directory (any fsspec URI) and rank-0 logging: manifest, resolved recipe, scalars, TensorBoard.

Layout::

    <run>/recipe.yaml          the resolved recipe (defaults filled in)
    <run>/manifest.json        cavkit, plugin, torch and python versions; devices; starts and resumes
    <run>/metrics.jsonl        one JSON line per logged step, validation and evaluation (appended as logged)
    <run>/checkpoints/         step-<N>.pt (atomic, keep_last)
    <run>/weights/             final.safetensors, averaged.safetensors
    <run>/tensorboard/         event files (written locally, uploaded for remote run directories)

TensorBoard's writer needs a local folder: for a remote run directory the events go to a local
temporary folder that :meth:`RunLogger.sync` copies to ``<run>/tensorboard`` (at checkpoints and
at the end); ``metrics.jsonl`` is rewritten there at the same moments, as object stores cannot append. Only rank 0 creates a :class:`RunLogger`; other ranks get :class:`NullLogger`.
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

from cavkit.engine.io_errors import writing
from cavkit.io import join, write_bytes_atomic


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")


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
    """Rank-0 writer of the manifest, recipe, ``metrics.jsonl`` and TensorBoard events.

    ``metrics.jsonl`` gets each record as it is logged: appended and flushed on a local disk (so
    ``tail -f`` and dashboards follow the run), rewritten whole at :meth:`sync` on object stores,
    which cannot append.
    """

    def __init__(self, run_dir: str, *, tensorboard: bool = True):
        self.run_dir = run_dir
        self.metrics_uri = join(run_dir, "metrics.jsonl")
        fs, path = fsspec.core.url_to_fs(run_dir)
        with writing(run_dir):
            fs.makedirs(path, exist_ok=True)
        self._local = is_local(run_dir)
        self._append: Any = None
        self._remote_lines: list[str] | None = None
        self._writer = None
        self._tb_local: str | None = None
        self._tb_temp = False
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            if self._local:
                self._tb_local = os.path.join(local_path(run_dir), "tensorboard")
            else:
                self._tb_local = tempfile.mkdtemp(prefix="cavkit-tb-")
                self._tb_temp = True
            with writing(self._tb_local):
                self._writer = SummaryWriter(self._tb_local)

    # -- metrics.jsonl ---------------------------------------------------------------------------
    def _read_metrics(self) -> list[str]:
        fs, path = fsspec.core.url_to_fs(self.metrics_uri)
        if not fs.exists(path):
            return []
        return fs.cat_file(path).decode("utf-8").splitlines()

    def drop_records_after(self, step: int) -> int:
        """Keep the records of steps ``<= step`` (resuming from the checkpoint of ``step``); returns how many went.

        Evaluation records come after a run's last checkpoint, so those at ``step`` go too; a line
        torn by a kill mid-append is dropped.
        """
        kept, dropped = [], 0
        for line in self._read_metrics():
            try:
                record = json.loads(line)
                keep = record["step"] < step or (record["step"] == step and record.get("kind") != "eval")
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            with writing(self.metrics_uri):
                write_bytes_atomic(self.metrics_uri, "".join(f"{line}\n" for line in kept).encode("utf-8"))
        return dropped

    def _write_line(self, line: str) -> None:
        with writing(self.metrics_uri):
            if self._local:
                if self._append is None:
                    self._append = open(local_path(self.metrics_uri), "a", encoding="utf-8")  # noqa: SIM115
                self._append.write(line + "\n")
                self._append.flush()
            else:
                if self._remote_lines is None:
                    self._remote_lines = self._read_metrics()
                self._remote_lines.append(line)

    # -- manifest and recipe ---------------------------------------------------------------------
    def write_start(self, *, recipe_yaml: str, versions: dict[str, str], world_size: int, device: str, resumed_from: str | None, argv: list[str]) -> None:
        import torch

        with writing(join(self.run_dir, "recipe.yaml")):
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
        with writing(manifest_uri):
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
        self._write_line(json.dumps({"kind": kind, "step": step, "time": _now(), **values}))
        if kind != "train" and self._writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)

    def sync(self) -> None:
        """Make everything logged so far durable: metrics (object stores: rewritten), TensorBoard events."""
        if self._remote_lines is not None:
            with writing(self.metrics_uri):
                write_bytes_atomic(self.metrics_uri, "".join(f"{line}\n" for line in self._remote_lines).encode("utf-8"))
        if self._writer is not None:
            with writing(self._tb_local or self.run_dir):
                self._writer.flush()
            if self._tb_temp and self._tb_local:
                fs, path = fsspec.core.url_to_fs(join(self.run_dir, "tensorboard"))
                with writing(join(self.run_dir, "tensorboard")):
                    fs.makedirs(path, exist_ok=True)
                    for name in os.listdir(self._tb_local):
                        fs.put_file(os.path.join(self._tb_local, name), f"{path}/{name}")

    def close(self) -> None:
        try:
            self.sync()
        finally:
            if self._append is not None:
                handle, self._append = self._append, None
                with writing(self.metrics_uri):
                    handle.close()  # flushes: a full disk is reported like any other write
            if self._writer is not None:
                self._writer.close()
                if self._tb_temp and self._tb_local:
                    shutil.rmtree(self._tb_local, ignore_errors=True)
                self._writer = None

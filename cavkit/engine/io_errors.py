"""Disk full, read-only or forbidden run directories as one line naming the path and the cause (exit 2).

The shared mechanism is :mod:`cavkit.io_errors`; the trainer's writes add the advice to train into
another ``--run-dir``. Anything the run wrote completely stays (writes are atomic, see
:mod:`cavkit.io`), so the message can point at the last checkpoint to resume from.
"""

from __future__ import annotations

from cavkit import io_errors

RUN_DIR_ADVICE = "train into another --run-dir"


def writing(path: str):
    """Run a write; an ``OSError`` becomes an error naming ``path``, the cause and ``--run-dir``."""
    return io_errors.writing(path, RUN_DIR_ADVICE)


def disk_errors_as_messages(default_path: str):
    """Disk full, quota or read-only file system anywhere in a training run becomes one message."""
    return io_errors.disk_errors_as_messages(default_path, RUN_DIR_ADVICE)

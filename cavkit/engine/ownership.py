"""One run directory, one owner: the lock, the fresh-run check, ``--overwrite`` and leftover temporaries.

**Lock.** On a local (or NFS-mounted) disk rank 0 holds an exclusive ``flock`` on ``<run>/.lock``
for the whole of ``fit``; the file names the owner (host, pid, start time). A second
``cavkit train`` into the same directory stops with exit 2 and that name. The kernel drops the lock
when the process ends in any way (also SIGKILL or a crash), so a killed run never leaves a stale
lock; the file itself stays and is harmless. Object stores (``s3://``, ``gs://``, ``memory://``)
offer no lock that two machines can share: there cavkit takes none, and nothing stops two runs
writing into one prefix at the same time; the fresh-run check below still catches a second run
started after the first has written anything.

**Fresh run.** A run without ``--resume`` into a directory that already holds a run (any of the
entries in :data:`RUN_ENTRIES`) is refused (exit 2) unless ``--overwrite`` is given, which deletes
those entries first. Other files in the directory are never touched.

**Leftovers.** A process killed while writing leaves a hidden ``.<name>.<hex>.tmp`` beside the
file it was writing (:func:`cavkit.io.temporary_sibling`); the next start deletes them.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import socket
from typing import IO

import fsspec

from cavkit.engine.dist import DistInfo, broadcast_object
from cavkit.engine.io_errors import writing
from cavkit.engine.run_dir import is_local, local_path
from cavkit.errors import CavkitError, UsageError
from cavkit.io import join

LOCK_NAME = ".lock"
RUN_ENTRIES = ("checkpoints", "weights", "metrics.jsonl", "manifest.json", "recipe.yaml", "tensorboard")
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")


class RunDirectoryBusy(UsageError):
    """Another process owns the run directory."""


class RunLock:
    """An exclusive, process-lifetime lock on a local run directory (a no-op for object stores)."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirectoryBusy` naming the owner."""
        if not is_local(self.run_dir):
            return
        import fcntl

        folder = local_path(self.run_dir)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, LOCK_NAME)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the run's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise RunDirectoryBusy(
                f"run directory {self.run_dir} is in use by {owner}; wait for that run to end, stop it, "
                "or train into another --run-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        handle.write(f"cavkit train (pid {os.getpid()} on {socket.gethostname()}, since {started})\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor drops the flock
            self._handle = None


def existing_run_entries(run_dir: str) -> list[str]:
    """The entries of :data:`RUN_ENTRIES` present in ``run_dir``."""
    fs, path = fsspec.core.url_to_fs(run_dir)
    return [name for name in RUN_ENTRIES if fs.exists(f"{path.rstrip('/')}/{name}")]


def check_fresh_run(run_dir: str, *, overwrite: bool) -> None:
    """Refuse a fresh run into a directory holding one; with ``overwrite`` delete the old run's entries."""
    found = existing_run_entries(run_dir)
    if not found:
        return
    if not overwrite:
        from cavkit.engine.checkpoint import latest_checkpoint

        if latest_checkpoint(run_dir) is not None:
            how = "continue it with --resume latest, replace it with --overwrite"
        else:
            how = "it has no checkpoint to resume from: replace it with --overwrite"
        raise UsageError(
            f"run directory {run_dir} already holds a run ({', '.join(found)}); {how}, or train into another --run-dir"
        )
    fs, path = fsspec.core.url_to_fs(run_dir)
    for name in found:
        fs.rm(f"{path.rstrip('/')}/{name}", recursive=True)


def remove_temporaries(run_dir: str) -> list[str]:
    """Delete ``.<name>.<hex>.tmp`` files left by killed writes in the run directory and its subfolders."""
    fs, path = fsspec.core.url_to_fs(run_dir)
    removed = []
    for folder in (path, *(f"{path.rstrip('/')}/{name}" for name in ("checkpoints", "weights"))):
        if not fs.isdir(folder):
            continue
        for entry in fs.ls(folder, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if _TEMPORARY.fullmatch(name):
                fs.rm(entry)
                removed.append(join(run_dir, entry[len(path.rstrip("/")) + 1 :]))
    return removed


def claim_run_dir(run_dir: str, lock: RunLock, dist: DistInfo, *, fresh: bool, overwrite: bool) -> None:
    """Rank 0 takes the lock, checks a fresh run's directory and deletes leftover temporaries.

    Every rank raises the same error when one of these fails (so none waits for the others).
    """
    problem: CavkitError | None = None
    if dist.is_rank_zero:
        try:
            with writing(run_dir):
                lock.acquire()
                if fresh:
                    check_fresh_run(run_dir, overwrite=overwrite)
                remove_temporaries(run_dir)
        except CavkitError as exc:
            problem = exc
    problem = broadcast_object(problem, dist)
    if problem is not None:
        raise problem

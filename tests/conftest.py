"""Fixtures every test folder may use: file systems that are full or read-only for real, one torch thread."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def one_cpu_thread():
    """One intra-op torch thread during the test, restored after: tiny models run faster without
    thread contention on small shared CPUs (folders of tiny-model tests use it for every test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_mount(tmp_path: Path):
    """``mount(options)``: a tmpfs at ``tmp_path/mntN`` with ``options`` (``size=16k``, ``ro,size=64k``).

    Skips where mounting is not allowed (not root, no CAP_SYS_ADMIN); unmounted after the test.
    """
    mounted = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True, check=False)


@pytest.fixture
def read_only_dir(tmp_path: Path, small_mount):
    """``(folder, cause)``: a folder nobody here can write into, and the cause the message must name.

    An ordinary user gets a chmod 0o555 folder (``Permission denied (EACCES)``); root ignores
    permissions, so root gets a read-only tmpfs (``Read-only file system (EROFS)``).
    """
    import os

    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder, "Permission denied (EACCES)"
        folder.chmod(0o755)
    else:
        yield small_mount("ro,size=64k"), "Read-only file system (EROFS)"


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(marker)``: writes of files whose name contains ``marker`` run out of space half-way.

    The atomic writer (:mod:`cavkit.io`) gets half the bytes onto the disk, then ``ENOSPC``; the test
    can then check that no output and no temporary file is left behind.
    """
    import errno
    import os

    import cavkit.io

    real = cavkit.io._write_chunks

    def arm(marker: str) -> None:
        def full(handle, data):
            if marker in os.path.basename(handle.name):
                real(handle, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(handle, data)

        monkeypatch.setattr(cavkit.io, "_write_chunks", full)

    return arm


@pytest.fixture
def one_line_write_error():
    """``check(result, path, cause)``: exit 2 and exactly one ``Error: cannot write PATH: CAUSE`` line,
    no traceback."""

    def check(result, path, cause: str) -> str:
        assert result.exit_code == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith(f"Error: cannot write {path}"), errors[0]
        assert cause in errors[0] and "Traceback" not in result.stderr
        return errors[0]

    return check

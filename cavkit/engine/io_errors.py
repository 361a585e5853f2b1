"""Disk full, read-only or forbidden run directories as one line naming the path and the cause (exit 2).

The trainer writes through :func:`writing`, which turns an ``OSError`` of a write into a
:class:`RunIOError`; anything the run wrote completely stays (writes are atomic, see
:mod:`cavkit.io`), so the message can point at the last checkpoint to resume from.
"""

from __future__ import annotations

import contextlib
import errno
import os

from cavkit.errors import UsageError

_ADVICE = {
    errno.ENOSPC: "free some space or train into another --run-dir",
    errno.EDQUOT: "free some quota or train into another --run-dir",
    errno.EROFS: "the file system is read-only: train into another --run-dir",
    errno.EACCES: "make it writable or train into another --run-dir",
    errno.EPERM: "make it writable or train into another --run-dir",
}


class RunIOError(UsageError):
    """Writing to the run directory failed (disk full, read-only, no permission, ...)."""


def describe(exc: OSError, path: str) -> str:
    """``cannot write PATH: No space left on device (ENOSPC); <advice>``."""
    code = exc.errno
    if code is None:
        return f"cannot write {path}: {exc}; check the path and the file system"
    cause = exc.strerror or os.strerror(code)
    name = errno.errorcode.get(code, "")
    advice = _ADVICE.get(code, "check the path and the file system")
    return f"cannot write {path}: {cause}{f' ({name})' if name else ''}; {advice}"


@contextlib.contextmanager
def writing(path: str):
    """Run a write; an ``OSError`` becomes :class:`RunIOError` naming ``path`` and the cause."""
    try:
        yield
    except RunIOError:
        raise
    except OSError as exc:
        raise RunIOError(describe(exc, path)) from None


@contextlib.contextmanager
def disk_errors_as_messages(default_path: str):
    """Like :func:`writing` for the errors that can only come from writing (disk full, quota, read-only
    file system), wherever they happen; other ``OSError`` pass (a missing input file is not the run's fault)."""
    try:
        yield
    except RunIOError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        raise RunIOError(describe(exc, exc.filename or default_path)) from None

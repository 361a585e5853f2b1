"""Disk full, read-only or forbidden outputs as one line naming the path and the cause (exit 2).

Every file cavkit writes goes through :func:`cavkit.io.write_bytes_atomic`, which turns an
``OSError`` of the write into an :class:`OutputWriteError`: ``cannot write PATH: CAUSE (ERRNO);
ADVICE``. The write is atomic, so the failed file is absent or unchanged, never half-written.
Callers that know a better place to send the user (the trainer: ``--run-dir``) wrap their writes
in :func:`writing` with their own ``elsewhere`` advice; the CLI turns the errors that can only come
from writing (disk full, quota, read-only file system) into the same message wherever they happen
(:func:`disk_errors_as_messages`).
"""

from __future__ import annotations

import contextlib
import errno
import os

from cavkit.errors import UsageError

#: what to tell the user by default: the command's output option names the other place
ELSEWHERE = "write to another output path"

#: errors that only a write can cause (a missing input file or a forbidden input is not among them)
WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

_ADVICE = {
    errno.ENOSPC: "free some space or {elsewhere}",
    errno.EDQUOT: "free some quota or {elsewhere}",
    errno.EROFS: "the file system is read-only: {elsewhere}",
    errno.EACCES: "make it writable or {elsewhere}",
    errno.EPERM: "make it writable or {elsewhere}",
}


def describe(exc: OSError, path: str, elsewhere: str = ELSEWHERE) -> str:
    """``cannot write PATH: No space left on device (ENOSPC); free some space or <elsewhere>``."""
    code = exc.errno
    if code is None:
        return f"cannot write {path}: {exc}; check the path and the file system"
    cause = exc.strerror or os.strerror(code)
    name = errno.errorcode.get(code, "")
    advice = _ADVICE.get(code, "check the path and the file system").format(elsewhere=elsewhere)
    return f"cannot write {path}: {cause}{f' ({name})' if name else ''}; {advice}"


class OutputWriteError(UsageError):
    """Writing ``path`` failed with ``cause`` (disk full, read-only, no permission, ...).

    :ivar path: the file or folder the user asked for (never a temporary sibling).
    :ivar cause: the original ``OSError``; :attr:`errno` is its error number.
    """

    def __init__(self, path: str, cause: OSError, elsewhere: str = ELSEWHERE):
        self.path = path
        self.cause = cause
        self.errno = cause.errno
        self.elsewhere = elsewhere
        super().__init__(describe(cause, path, elsewhere))

    def __reduce__(self):  # crosses process pools (``cavkit prepare -j N``) intact
        return type(self), (self.path, OSError(self.cause.errno, self.cause.strerror), self.elsewhere)


@contextlib.contextmanager
def writing(path: str, elsewhere: str = ELSEWHERE):
    """Run a write; an ``OSError`` becomes :class:`OutputWriteError` naming ``path`` and the cause.

    An :class:`OutputWriteError` from a nested write keeps its path and gets this ``elsewhere`` advice.
    """
    try:
        yield
    except OutputWriteError as exc:
        raise _advised(exc, elsewhere) from None
    except OSError as exc:
        raise OutputWriteError(path, exc, elsewhere) from None


@contextlib.contextmanager
def disk_errors_as_messages(default_path: str, elsewhere: str | None = None):
    """Like :func:`writing` for the errors only a write can cause (:data:`WRITE_ONLY_ERRNOS`), wherever
    they happen; other ``OSError`` pass (a missing input file is not a write's fault).

    :param elsewhere: the advice; ``None`` (the CLI's catch-all) keeps the advice of an error raised
        inside and gives the others :data:`ELSEWHERE`.
    """
    try:
        yield
    except OutputWriteError as exc:
        if elsewhere is None:
            raise
        raise _advised(exc, elsewhere) from None
    except OSError as exc:
        if exc.errno not in WRITE_ONLY_ERRNOS:
            raise
        raise OutputWriteError(exc.filename or default_path, exc, elsewhere or ELSEWHERE) from None


def _advised(exc: OutputWriteError, elsewhere: str) -> OutputWriteError:
    return exc if exc.elsewhere == elsewhere else OutputWriteError(exc.path, exc.cause, elsewhere)

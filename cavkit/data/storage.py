"""Every byte the data code reads or writes goes through fsspec (local, ``memory://``, ``s3://``...).

Writes are atomic (a reader never sees a half-written file): see :mod:`cavkit.io`.
"""

from __future__ import annotations

import os
import posixpath

import fsspec
from fsspec.implementations.local import LocalFileSystem

from cavkit.io import make_dirs, read_bytes, write_bytes_atomic, write_text_atomic  # noqa: F401  (the data code's I/O)


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path inside it)`` for a URI or local path."""
    return fsspec.core.url_to_fs(uri)


def is_local(uri: str) -> bool:
    return isinstance(filesystem(uri)[0], LocalFileSystem)


def has_protocol(uri: str) -> bool:
    return "://" in uri or "::" in uri


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI or local path (``/`` separated)."""
    if not has_protocol(base):
        return os.path.join(base, *parts)
    return posixpath.join(base, *parts)


def parent(uri: str) -> str:
    if not has_protocol(uri):
        return os.path.dirname(os.path.abspath(uri))
    return posixpath.dirname(uri.rstrip("/"))


def resolve(path: str, base_dir: str) -> str:
    """``path`` if it is absolute or a URI, else ``path`` relative to ``base_dir``."""
    if has_protocol(path) or os.path.isabs(path):
        return path
    return join(base_dir, path)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def size(uri: str) -> int | None:
    """Size in bytes, or ``None`` when the file does not exist."""
    fs, path = filesystem(uri)
    try:
        return int(fs.size(path))
    except (FileNotFoundError, OSError):
        return None


def makedirs(uri: str) -> None:
    """Create an output folder; a failure is one message naming it (:func:`cavkit.io.make_dirs`)."""
    make_dirs(uri)



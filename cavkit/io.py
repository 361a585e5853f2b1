"""Writing and reading user paths through fsspec (local, ``memory://``, ``s3://``, ...).

One rule for every file cavkit writes (checkpoints, prepared clips, embeddings, pictures, reports):
it appears complete or not at all. On a local disk the bytes go to a hidden temporary sibling, are
flushed and fsync'ed, and only then renamed to the final name, so a crash or a kill mid-write never
leaves a file that looks valid or replaces a good one with a partial one. Object stores (and
``memory://``) receive the whole object in one ``pipe`` call, which is atomic there and avoids the
copy that a rename costs on them.
"""

from __future__ import annotations

import os
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from cavkit.io_errors import writing

_CHUNK = 8 << 20


def join(base: str, *parts: str) -> str:
    """Join URI path parts with ``/`` (works for local paths and ``scheme://`` URIs alike)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def temporary_sibling(path: str) -> str:
    """A hidden, unique temporary name beside ``path`` (``.<name>.<hex>.tmp``)."""
    parent, _, name = path.rpartition("/")
    tmp_name = f".{name}.{uuid.uuid4().hex}.tmp"
    return f"{parent}/{tmp_name}" if parent else tmp_name


def _write_chunks(handle, data: bytes) -> None:
    for start in range(0, len(data), _CHUNK):
        handle.write(data[start : start + _CHUNK])


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so that ``uri`` either does not change or holds all of ``data``.

    :raises cavkit.io_errors.OutputWriteError: the write failed (disk full, read-only file system, no
        permission, ...); the message names ``uri`` and the cause, and ``uri`` is left as it was.
    """
    with writing(uri):
        _write_bytes_atomic(uri, data)


def _write_bytes_atomic(uri: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    parent = path.rpartition("/")[0]
    if not isinstance(fs, LocalFileSystem):
        if parent:
            try:
                fs.makedirs(parent, exist_ok=True)
            except (OSError, NotImplementedError):  # pragma: no cover - object stores without folders
                pass
        fs.pipe_file(path, data)
        return
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as handle:
            _write_chunks(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
        finally:
            raise


def make_dirs(uri: str) -> None:
    """Create the folder ``uri`` and its parents (an output folder: errors as :func:`write_bytes_atomic`)."""
    with writing(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        fs.makedirs(path, exist_ok=True)


def write_text_atomic(uri: str, text: str) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(uri, text.encode("utf-8"))


def read_bytes(uri: str) -> bytes:
    """Read a whole file from any fsspec URI."""
    with fsspec.open(uri, "rb") as fh:
        return fh.read()

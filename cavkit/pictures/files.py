"""Writing and reading user paths through fsspec, never leaving half-written files."""

from __future__ import annotations

import uuid

import fsspec


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` (any fsspec URI) via a temporary name in the same folder, then rename."""
    fs, path = fsspec.core.url_to_fs(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def read_bytes(uri: str) -> bytes:
    """Read a whole file from any fsspec URI."""
    with fsspec.open(uri, "rb") as fh:
        return fh.read()


def join(base: str, *parts: str) -> str:
    """Join URI parts with ``/`` (works for local paths and ``scheme://`` URIs alike)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out

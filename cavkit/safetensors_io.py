"""Reading safetensors files (weights, features, embeddings, fixtures) and their header metadata, through
``safetensors.safe_open``, and turning torch tensors into a file's bytes: the one place cavkit reads
and serialises them (writing the bytes, atomically, is :func:`cavkit.io.write_bytes_atomic`'s job).

``safe_open`` needs a local file. A local path is opened in place (for :func:`read_metadata` only
the header is read); a remote URI (``memory://``, ``s3://``) or bytes already in memory go through
one temporary local copy. A file that is not safetensors, or is cut short, raises
:class:`SafetensorsFileError`; callers turn it into their area's error with their own advice.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "SafetensorsFileError",
    "looks_like_safetensors",
    "read_metadata",
    "read_safetensors",
    "read_tensor_names",
    "safetensors_bytes",
]

Framework = Literal["pt", "numpy"]


class SafetensorsFileError(Exception):
    """The file is not a readable safetensors file (corrupt, truncated or another format)."""


def looks_like_safetensors(data: bytes) -> bool:
    """Whether ``data`` starts like a safetensors file (a little-endian header length, then ``{``)."""
    return len(data) >= 10 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") < 100_000_000


@contextlib.contextmanager
def _local_file(source: str | bytes) -> Iterator[str]:
    """A local path holding ``source``: the file itself when it is local, else a temporary copy."""
    if isinstance(source, str):
        fs, path = fsspec.core.url_to_fs(source)
        if isinstance(fs, LocalFileSystem):
            if not os.path.isfile(path):
                raise FileNotFoundError(source)
            yield path
            return
        with fs.open(path, "rb") as fh:
            source = fh.read()
    handle, tmp = tempfile.mkstemp(suffix=".safetensors")
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(source)
        yield tmp
    finally:
        os.unlink(tmp)


def _safe_open(path: str, framework: Framework):
    from safetensors import safe_open

    try:
        return safe_open(path, framework=framework)
    except Exception as exc:  # safetensors raises its own error type for every malformed header
        raise SafetensorsFileError(str(exc)) from exc


def read_metadata(source: str | bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (``{}`` when it has none).

    :param source: a path or fsspec URI, or the file's bytes.
    :raises FileNotFoundError: if the path does not exist.
    :raises SafetensorsFileError: if it is not a readable safetensors file.
    """
    with _local_file(source) as path:
        with _safe_open(path, "numpy") as fh:
            return dict(fh.metadata() or {})


def read_tensor_names(source: str | bytes) -> list[str]:
    """The names of the tensors in a safetensors file (only the header is read from a local file).

    :raises FileNotFoundError: if the path does not exist.
    :raises SafetensorsFileError: if it is not a readable safetensors file.
    """
    with _local_file(source) as path, _safe_open(path, "numpy") as fh:
        return list(fh.keys())


def read_safetensors(
    source: str | bytes, framework: Framework = "pt", *, select: Callable[[str], bool] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors (torch tensors, or NumPy arrays with ``framework="numpy"``) and the metadata.

    :param select: read only the tensors whose name it accepts (``None``: all); from a local file
        the others are never loaded.
    :raises FileNotFoundError: if the path does not exist.
    :raises SafetensorsFileError: if it is not a readable safetensors file (including one cut short).
    """
    with _local_file(source) as path:
        with _safe_open(path, framework) as fh:
            try:
                tensors = {name: fh.get_tensor(name) for name in fh.keys() if select is None or select(name)}
            except Exception as exc:
                raise SafetensorsFileError(str(exc)) from exc
            return tensors, dict(fh.metadata() or {})


def safetensors_bytes(
    tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None, framework: Framework = "pt"
) -> bytes:
    """The safetensors file of ``tensors`` with ``metadata`` in its header, as bytes for
    :func:`cavkit.io.write_bytes_atomic`: torch tensors (each detached, moved to the CPU and made
    contiguous), or NumPy arrays with ``framework="numpy"`` (each made C-contiguous)."""
    meta = dict(metadata) if metadata is not None else None
    if framework == "numpy":
        import numpy as np
        from safetensors.numpy import save as save_numpy

        return save_numpy({name: np.ascontiguousarray(a) for name, a in tensors.items()}, metadata=meta)
    from safetensors.torch import save

    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, metadata=meta)

"""Embedding files: arrays keyed by name plus the clip id of every row, as safetensors or NumPy.

Layout (both formats): one array per embedding (``audio_global``, ``visual_pooled``,
``audio_patches``, ...), first axis = clips in ``clip_ids`` order. Sync models add a frame axis:
``[N,K,D]`` (or ``[N,K,L,D]`` for patches) with ``frames [N,K]`` holding the frame indices.

* ``.safetensors``: clip ids are stored as a JSON list in the header metadata under ``clip_ids``.
* ``.npz``: clip ids are an array of strings under the key ``clip_ids``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping

import numpy as np

from cavkit.errors import DataError, UsageError
from cavkit.pictures.files import read_bytes, write_bytes_atomic

FORMATS = ("safetensors", "npz")


def format_from_path(uri: str) -> str:
    """``safetensors`` or ``npz`` from the file extension; anything else is a usage error."""
    if uri.endswith(".safetensors"):
        return "safetensors"
    if uri.endswith(".npz"):
        return "npz"
    raise UsageError(f"{uri}: unknown embedding file type; name it *.safetensors or *.npz")


def embeddings_bytes(arrays: Mapping[str, np.ndarray], clip_ids: list[str], fmt: str) -> bytes:
    """Serialise ``arrays`` (each with ``len(clip_ids)`` rows) and the clip ids."""
    for name, array in arrays.items():
        if array.shape[0] != len(clip_ids):
            raise ValueError(f"{name} has {array.shape[0]} rows but there are {len(clip_ids)} clip ids")
        if name == "clip_ids":
            raise ValueError("'clip_ids' is reserved for the clip id list")
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save(contiguous, metadata={"clip_ids": json.dumps(list(clip_ids)), "format": "cavkit-embeddings"})
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, clip_ids=np.asarray(list(clip_ids), dtype=str), **contiguous)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def write_embeddings(uri: str, arrays: Mapping[str, np.ndarray], clip_ids: list[str]) -> None:
    """Write an embedding file to any fsspec URI (format from the extension), atomically."""
    write_bytes_atomic(uri, embeddings_bytes(arrays, clip_ids, format_from_path(uri)))


def read_embeddings(uri: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read a file written by :func:`write_embeddings`: ``(arrays, clip_ids)``."""
    fmt = format_from_path(uri)
    data = read_bytes(uri)
    if fmt == "safetensors":
        from safetensors.numpy import load

        # The header is read directly from the bytes (safe_open needs a local file).
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = header.get("__metadata__") or {}
        if "clip_ids" not in meta:
            raise DataError(f"{uri}: no clip_ids in the safetensors metadata; not a cavkit embedding file")
        return dict(load(data)), json.loads(meta["clip_ids"])
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        if "clip_ids" not in npz.files:
            raise DataError(f"{uri}: no clip_ids array; not a cavkit embedding file")
        arrays = {k: npz[k] for k in npz.files if k != "clip_ids"}
        return arrays, [str(x) for x in npz["clip_ids"]]

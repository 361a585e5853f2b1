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
from cavkit.io import read_bytes, write_bytes_atomic

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
    if fmt == "safetensors":
        from cavkit.safetensors_io import safetensors_bytes

        meta = {"clip_ids": json.dumps(list(clip_ids)), "format": "cavkit-embeddings"}
        return safetensors_bytes(arrays, meta, framework="numpy")
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, clip_ids=np.asarray(list(clip_ids), dtype=str), **arrays)
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
        from cavkit.safetensors_io import SafetensorsFileError, read_safetensors

        try:
            arrays, meta = read_safetensors(data, framework="numpy")
        except SafetensorsFileError as exc:
            raise DataError(f"{uri}: not a readable safetensors file ({exc})") from None
        if "clip_ids" not in meta:
            raise DataError(f"{uri}: no clip_ids in the safetensors metadata; not a cavkit embedding file")
        return arrays, json.loads(meta["clip_ids"])
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        if "clip_ids" not in npz.files:
            raise DataError(f"{uri}: no clip_ids array; not a cavkit embedding file")
        arrays = {k: npz[k] for k in npz.files if k != "clip_ids"}
        return arrays, [str(x) for x in npz["clip_ids"]]


# -- extracting from a model --------------------------------------------------------------------------
#: Embedding kinds and the :class:`~cavkit.interfaces.Embeddings` field suffix they read.
KINDS = {"global": "global", "pooled": "pooled", "patches": "patches"}
MODALITIES = ("audio", "visual")


def extract_embeddings(
    model,
    batches,
    *,
    kinds: tuple[str, ...] = ("pooled",),
    modalities: tuple[str, ...] = MODALITIES,
    device="cpu",
    autocast_dtype=None,
    dtype=np.float32,
    progress=None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Run ``model.embed`` over collated batches and gather the requested embeddings, unnormalised.

    Batches hold one frame per clip (``audio [B,T,128]``, ``image [B,3,H,W]``) or K frames
    (``[B,K,L,128]``, ``[B,K,3,H,W]``, Sync retrieval mode); then every array gets a frame axis after
    the clip axis and ``frames [N,K]`` records the frame numbers.

    :returns: ``({"audio_pooled": [N,(K,)D], "visual_patches": [N,(K,)L,D], ...}, clip_ids)``.
    """
    import torch

    for kind in kinds:
        if kind not in KINDS:
            raise UsageError(f"unknown embedding kind {kind!r}; choose from {', '.join(KINDS)}")
    for modality in modalities:
        if modality not in MODALITIES:
            raise UsageError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    device = torch.device(device)
    parts: dict[str, list[np.ndarray]] = {}
    clip_ids: list[str] = []
    multi_frame = None
    with torch.inference_mode():
        for batch in batches:
            audio, image = batch["audio"], batch["image"]
            k = audio.shape[1] if image.dim() == 5 else None
            if multi_frame is None:
                multi_frame = k is not None
            b = audio.shape[0]
            if k is not None:
                audio, image = audio.flatten(0, 1), image.flatten(0, 1)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                emb = model.embed(
                    audio.to(device) if "audio" in modalities else None,
                    image.to(device) if "visual" in modalities else None,
                )
            for modality in modalities:
                for kind in kinds:
                    name = f"{modality}_{KINDS[kind]}"
                    value = getattr(emb, name)
                    if value is None:
                        raise UsageError(
                            f"this model gives no {kind} {modality} embedding (Embeddings.{name} is empty)"
                        )
                    value = value.float().cpu()
                    if k is not None:
                        value = value.reshape(b, k, *value.shape[1:])
                    parts.setdefault(name, []).append(value.numpy().astype(dtype))
            if k is not None:
                frames = batch.get("frame")
                frames = torch.as_tensor(frames) if frames is not None else torch.arange(k).expand(b, k)
                parts.setdefault("frames", []).append(frames.reshape(b, k).numpy().astype(np.int64))
            ids = batch.get("clip_id")
            clip_ids += [str(c) for c in ids] if ids is not None else [str(len(clip_ids) + i) for i in range(b)]
            if progress is not None:
                progress.update(b)
    if not clip_ids:
        raise DataError("the dataset is empty: no clip to embed")
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}, clip_ids

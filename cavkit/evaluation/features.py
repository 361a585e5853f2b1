"""One pass of feature extraction over a dataset, shared by both retrieval directions and kNN.

A dataset item (see :data:`cavkit.interfaces.SAMPLE_KEYS`) holds one frame (``audio [T,128]``,
``image [3,H,W]``, CAV-MAE) or K frames (``audio [K,L,128]``, ``image [K,3,H,W]``, Sync retrieval
mode). Batches are flattened to ``[B*K, ...]``, embedded once with ``model.embed`` (spec §8.2 step 2),
L2-normalised and reshaped to ``[B,K,D]``. Which embedding is used:

* ``global``: the Sync global (cls) tokens ``audio_global`` / ``visual_global`` (§8.2);
* ``pooled``: mean over patch tokens ``audio_pooled`` / ``visual_pooled`` (§8.1);
* ``auto``: global when the model has them, else pooled.

:class:`Features` saves to and loads from safetensors through fsspec (atomic write), so one
extraction can serve many strategies, directions and kNN runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F

from cavkit.errors import DataError, UsageError
from cavkit.io import write_bytes_atomic

EmbeddingKind = Literal["auto", "global", "pooled"]


@attrs.define
class Features:
    """L2-normalised per-frame embeddings of N clips.

    :ivar audio: ``[N,K,D]``. :ivar visual: ``[N,K,D]``.
    :ivar labels: ``[N,C]`` targets when the dataset has labels, else ``None``.
    :ivar clip_ids: N clip ids (strings; index numbers when the dataset gives none).
    :ivar embedding: which embedding was taken (``global`` or ``pooled``).
    """

    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor | None = None
    clip_ids: list[str] = attrs.field(factory=list)
    embedding: str = "pooled"

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    def save(self, uri: str) -> None:
        """Write a safetensors file (any fsspec URI), via a temporary name then a rename."""
        from cavkit.safetensors_io import safetensors_bytes

        tensors = {"audio": self.audio.float(), "visual": self.visual.float()}
        if self.labels is not None:
            tensors["labels"] = self.labels.float()
        meta = {"clip_ids": json.dumps(self.clip_ids), "embedding": self.embedding, "format": "cavkit-features/1"}
        write_bytes_atomic(uri, safetensors_bytes(tensors, meta))

    @classmethod
    def load(cls, uri: str) -> Features:
        from cavkit.safetensors_io import SafetensorsFileError, read_safetensors

        try:
            tensors, meta = read_safetensors(uri)
        except FileNotFoundError as exc:
            raise UsageError(f"features file {uri!r} does not exist; write one with --save-features") from exc
        except SafetensorsFileError as exc:
            raise DataError(f"features file {uri!r} is not a readable safetensors file: {exc}") from exc
        if "audio" not in tensors or "visual" not in tensors:
            raise DataError(f"features file {uri!r} lacks the 'audio' and 'visual' tensors")
        return cls(
            audio=tensors["audio"],
            visual=tensors["visual"],
            labels=tensors.get("labels"),
            clip_ids=json.loads(meta.get("clip_ids", "[]")),
            embedding=meta.get("embedding", "pooled"),
        )


def pick_embeddings(embeddings: Any, kind: EmbeddingKind) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(audio [B,D], visual [B,D], chosen kind)`` from a :class:`cavkit.interfaces.Embeddings`."""
    has_global = embeddings.audio_global is not None and embeddings.visual_global is not None
    has_pooled = embeddings.audio_pooled is not None and embeddings.visual_pooled is not None
    if kind == "auto":
        kind = "global" if has_global else "pooled"
    if kind == "global" and not has_global:
        raise UsageError("this model has no global tokens; use --embedding pooled")
    if kind == "pooled" and not has_pooled:
        raise UsageError("this model returns no pooled embeddings; use --embedding global")
    if kind == "global":
        return embeddings.audio_global, embeddings.visual_global, kind
    if kind == "pooled":
        return embeddings.audio_pooled, embeddings.visual_pooled, kind
    raise UsageError(f"unknown embedding {kind!r}; use auto, global or pooled")


def _flatten_frames(audio: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batches of one frame ``[B,T,128]``/``[B,3,H,W]`` or K frames ``[B,K,L,128]``/``[B,K,3,H,W]``."""
    if audio.dim() == 3 and image.dim() == 4:
        return audio, image, 1
    if audio.dim() == 4 and image.dim() == 5 and audio.shape[1] == image.shape[1]:
        k = audio.shape[1]
        return audio.flatten(0, 1), image.flatten(0, 1), k
    raise DataError(
        f"cannot pair audio {tuple(audio.shape)} with image {tuple(image.shape)}: expected [B,T,128] with "
        "[B,3,H,W], or [B,K,L,128] with [B,K,3,H,W]"
    )


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    embedding: EmbeddingKind = "auto",
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    limit: int | None = None,
) -> Features:
    """Embed every clip once: per-frame L2-normalised audio and visual embeddings ``[N,K,D]``.

    :param model: a model with ``embed(audio, image) -> Embeddings`` (in eval mode).
    :param batches: collated dataset batches (a DataLoader).
    :param limit: keep only the first ``limit`` clips (upstream's ``--nums_samples``).
    :param autocast_dtype: e.g. ``torch.float16`` on GPU (upstream runs under autocast).
    """
    model.eval()
    device = torch.device(device)
    audio_out, visual_out, labels_out, ids = [], [], [], []
    chosen = embedding
    seen = 0
    for batch in batches:
        if limit is not None and seen >= limit:
            break
        audio, image, k = _flatten_frames(batch["audio"], batch["image"])
        b = audio.shape[0] // k
        take = b if limit is None else min(b, limit - seen)
        audio, image = audio[: take * k].to(device), image[: take * k].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model.embed(audio, image)
        a, v, chosen = pick_embeddings(out, embedding)
        a = F.normalize(a.float(), dim=-1).reshape(take, k, -1)
        v = F.normalize(v.float(), dim=-1).reshape(take, k, -1)
        audio_out.append(a.cpu())
        visual_out.append(v.cpu())
        if "label" in batch and batch["label"] is not None:
            labels_out.append(torch.as_tensor(batch["label"])[:take].float().cpu())
        clip_ids = batch.get("clip_id")
        ids += [str(c) for c in clip_ids[:take]] if clip_ids is not None else [str(seen + i) for i in range(take)]
        seen += take
    if not audio_out:
        raise DataError("the evaluation dataset is empty: no clip to embed")
    labels = torch.cat(labels_out) if labels_out and len(labels_out) == len(audio_out) else None
    return Features(torch.cat(audio_out), torch.cat(visual_out), labels, ids, chosen)

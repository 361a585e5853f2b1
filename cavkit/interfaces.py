"""What each component kind receives and returns: the contract between cavkit's parts and plugins.

Shapes use B = batch, T = fbank frames, F = 128 mel bins, La / Lv = audio / visual patch tokens,
D = encoder width, C = classes, K = frames per clip (Sync). This module imports no torch.

Kinds and their call signatures (every factory is called as ``factory(config, **context)``):

``model``
    ``model(audio [B,T,128], image [B,3,H,W], *, noise_audio=None, noise_visual=None) -> ModelOutput``
    and ``model.embed(audio, image) -> Embeddings`` (unmasked, for retrieval and export).
``objective``
    an ``nn.Module``; ``objective(batch: dict, output: ModelOutput) -> ObjectiveOutput``. Its
    parameters (e.g. a learnable temperature) are trained with the model. The trainer multiplies
    ``loss`` by the recipe's ``weight:``.
``retrieval_strategy``
    ``strategy(query [N,K,D], gallery [M,K,D]) -> similarity [N,M]``: inputs are L2-normalised
    per-frame embeddings (K = 1 for single-vector models); row i scores query i against every
    gallery item. Optional attribute ``symmetric = True`` declares ``S(q, g) == S(g, q).T``, so that
    retrieval evaluation computes one matrix for both directions.
``dataset``
    a ``torch.utils.data.Dataset`` (or ``IterableDataset``) built as ``factory(config)``; items are
    dicts, see :data:`SAMPLE_KEYS`.
``masker``
    ``masker(tokens [B,L,D], noise [B,L] | None, *, grid=(rows, cols) | None) -> Masked``: keeps the
    ``int(L·(1-ratio))`` tokens with the lowest noise (drawing ``U[0,1)`` noise when ``None``);
    ``grid`` is the token layout (frequency rows, time columns), needed by structured maskers.
``tokenizer`` / ``encoder`` / ``decoder``
    ``nn.Module`` parts assembled by a model; see their docstrings for shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Tensor = Any  # torch.Tensor; kept abstract so that this module imports no torch

#: Keys of a dataset item. ``audio``: normalised fbank ``[T,128]`` (Sync retrieval: ``[K,L,128]``);
#: ``image``: normalised frame ``[3,H,W]`` (Sync retrieval: ``[K,3,H,W]``); ``label``: multi-hot or
#: smoothed targets ``[C]`` (absent when the dataset has no labels); ``clip_id``: str;
#: ``frame``: frame index (int, or ``[K]``). Datasets may add keys (e.g. synthetic ground truth).
SAMPLE_KEYS = ("audio", "image", "label", "clip_id", "frame")


@dataclass
class ModelOutput:
    """What a model's forward returns. Fields a model does not produce stay ``None``.

    :ivar pred_audio: decoder predictions ``[B,La,256]`` (MAE).
    :ivar pred_visual: decoder predictions ``[B,Lv,768]``.
    :ivar target_audio: patchified audio input ``[B,La,256]``.
    :ivar target_visual: patchified image ``[B,Lv,768]``.
    :ivar mask_audio: ``[B,La]``, 1 = removed (MAE convention).
    :ivar mask_visual: ``[B,Lv]``.
    :ivar audio_tokens: contrastive-branch patch latents ``[B,n_a,D]`` (visible tokens, after norm_a).
    :ivar visual_tokens: ``[B,n_v,D]``.
    :ivar audio_global: Sync global token ``[B,D]`` after norm_a.
    :ivar visual_global: ``[B,D]``.
    :ivar logits: classifier output ``[B,C]``.
    """

    pred_audio: Tensor | None = None
    pred_visual: Tensor | None = None
    target_audio: Tensor | None = None
    target_visual: Tensor | None = None
    mask_audio: Tensor | None = None
    mask_visual: Tensor | None = None
    audio_tokens: Tensor | None = None
    visual_tokens: Tensor | None = None
    audio_global: Tensor | None = None
    visual_global: Tensor | None = None
    logits: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class ObjectiveOutput:
    """An objective's result: the (unweighted) scalar ``loss`` and scalars to log."""

    loss: Tensor
    logs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Embeddings:
    """Unmasked embeddings from ``model.embed``; ``None`` where the model has no such output.

    :ivar audio_patches: ``[B,La,D]`` after norm_a; :ivar visual_patches: ``[B,Lv,D]`` after norm_v.
    :ivar audio_pooled / visual_pooled: mean over patch tokens ``[B,D]``.
    :ivar audio_global / visual_global: Sync global tokens ``[B,D]``.
    """

    audio_patches: Tensor | None = None
    visual_patches: Tensor | None = None
    audio_pooled: Tensor | None = None
    visual_pooled: Tensor | None = None
    audio_global: Tensor | None = None
    visual_global: Tensor | None = None


@dataclass
class Masked:
    """A masker's result: kept tokens ``[B,keep,D]``, mask ``[B,L]`` (1 = removed), ``ids_restore [B,L]``."""

    kept: Tensor
    mask: Tensor
    ids_restore: Tensor

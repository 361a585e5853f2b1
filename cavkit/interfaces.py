"""What each component kind receives and returns: the contract between cavkit's parts and plugins.

Shapes use B = batch, T = fbank frames, F = 128 mel bins, La / Lv = audio / visual patch tokens,
D = encoder width, C = classes, K = frames per clip (Sync). This module imports no torch.

Every factory is called as ``factory(config, **context)`` with a validated config instance. The
context is fixed per kind (a factory should name exactly these keyword parameters, so that a
misspelt one is a ``TypeError`` rather than silently ignored):

=======================  ==========================================================================
kind                     context keywords
=======================  ==========================================================================
tokenizer (audio slot)   ``embed_dim``, ``audio_length``, ``trainable_pos``
tokenizer (visual slot)  ``embed_dim``, ``image_size``, ``trainable_pos``
encoder                  ``embed_dim``
aggregator               ``dim`` (the per-frame feature width W, :mod:`cavkit.models.aggregators`)
decoder                  ``encoder_dim``, ``audio_grid``, ``visual_grid``, ``audio_patch_dim``,
                         ``visual_patch_dim``
everything else          none
=======================  ==========================================================================

Kinds and what they are called with (:class:`Tokenizer`, :class:`Encoder`, :class:`Decoder` and
:class:`Masker` spell out the calls the built-in models make):

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
``aggregator``
    an ``nn.Module`` with an int attribute ``out_dim``; ``aggregator(frames [B,K,W]) -> [B,out_dim]``
    turns a clip's K per-frame features into one clip feature (the Sync classifier's frame
    aggregation, :mod:`cavkit.models.aggregators`); a clip's output must not depend on the other
    clips of the batch.
``masker`` / ``tokenizer`` / ``encoder`` / ``decoder``
    see :class:`Masker`, :class:`Tokenizer`, :class:`Encoder`, :class:`Decoder`.

:func:`cavkit.testing.check_component` runs each kind against these contracts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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


@dataclass
class EncoderOutput:
    """What an encoder's forward returns.

    :ivar joint: ``[B, na+nv, D]``: the joint pass over [audio patches; visual patches] after
        ``norm`` (feeds the decoder); ``None`` with ``joint=False`` or when an input is missing.
    :ivar audio / visual: patch latents ``[B, na, D]`` / ``[B, nv, D]`` of the per-modality passes
        (feed the contrastive losses); ``None`` for a missing input.
    :ivar audio_global / visual_global: global tokens ``[B, D]`` after the same norms, or ``None``
        when the encoder has none.
    """

    joint: Tensor | None
    audio: Tensor | None
    visual: Tensor | None
    audio_global: Tensor | None = None
    visual_global: Tensor | None = None


# -- the parts a model assembles (spec §1.2, §2.1-2.3, §5.1) ----------------------------------------
class Tokenizer(Protocol):
    """Input to patch tokens, with the MAE targets (spec §1.2, §1.3).

    Token ``k`` sits at grid cell ``(k // cols, k % cols)`` of ``grid = (rows, cols)``: row-major.
    For audio the rows are frequency and the columns time (fbank ``[B,T,F]`` seen as a picture
    ``[B,1,F,T]``: token ``k`` covers mel bins ``p·(k // cols)..`` and frames ``p·(k % cols)..``);
    structured maskers and the decoder's position embeddings rely on this layout.
    """

    #: ``(rows, cols)`` of the token grid; ``rows · cols == L``.
    grid: tuple[int, int]
    #: values per patch in the MAE target (``p·p·channels``: 256 for audio, 768 for RGB 16x16).
    patch_dim: int

    def __call__(self, x: Tensor) -> Tensor:
        """``audio [B,T,F]`` or ``image [B,C,H,W]`` -> tokens ``[B, L, D]`` (positions included)."""

    def patchify(self, x: Tensor) -> Tensor:
        """The MAE target ``[B, L, patch_dim]`` in token order."""

    def unpatchify(self, patches: Tensor) -> Tensor:
        """``[B, L, patch_dim]`` -> picture: audio ``[B,1,F,T]``, image ``[B,C,H,W]``;
        ``unpatchify(patchify(x))`` gives ``x`` back (audio: as the picture ``x.transpose(1, 2)[:, None]``)."""


class Encoder(Protocol):
    """Modality stacks and a shared joint layer (spec §2.1, §5.1).

    The MAE model calls ``encoder(kept_audio, kept_visual)``; the classifier and the embedding
    path call the pieces below. A global token, if any, sits at index 0 of a stacked sequence.
    """

    #: width D of inputs and outputs (the classifier sizes its head from it).
    embed_dim: int
    #: whether stacked sequences carry a global token at index 0 (Sync).
    has_global_tokens: bool

    def __call__(self, audio: Tensor | None, visual: Tensor | None, *, joint: bool = True) -> EncoderOutput:
        """Encode patch tokens ``[B,na,D]`` and ``[B,nv,D]`` (either may be ``None``)."""

    def stack_audio(self, a: Tensor) -> Tensor:
        """``[B,na,D] -> [B,g+na,D]`` through the audio-specific blocks (g = 1 with a global token)."""

    def stack_visual(self, v: Tensor) -> Tensor:
        """``[B,nv,D] -> [B,g+nv,D]`` through the visual-specific blocks."""

    def strip_global(self, x: Tensor) -> Tensor:
        """``[B,g+n,D] -> [B,n,D]``: drop the global token if there is one."""

    def joint(self, x: Tensor) -> Tensor:
        """Joint pass over patch tokens ``[B,n,D] -> [B,n,D]`` (shared blocks, then ``norm``)."""

    def modality_pass(self, x: Tensor, modality: Literal["a", "v"]) -> Tensor:
        """Per-modality pass ``[B,g+n,D] -> [B,g+n,D]`` (shared blocks, then ``norm_a``/``norm_v``)."""


class Decoder(Protocol):
    """The MAE decoder (spec §2.3)."""

    def __call__(
        self, joint: Tensor, ids_restore_a: Tensor, ids_restore_v: Tensor, num_audio_kept: int
    ) -> tuple[Tensor, Tensor]:
        """``joint [B, ka+kv, D]`` (the encoder's joint output: ``ka`` visible audio tokens, then
        ``kv`` visual ones), the maskers' ``ids_restore`` ``[B,La]`` / ``[B,Lv]`` and ``ka``
        -> predictions ``(pred_a [B,La,audio_patch_dim], pred_v [B,Lv,visual_patch_dim])`` in
        token order (compared with the tokenizers' ``patchify`` targets)."""


class Masker(Protocol):
    """Random masking in the MAE convention (spec §2.2).

    ``masker(tokens [B,L,D], noise [B,L] | None, *, grid=(rows, cols) | None) -> Masked`` keeps the
    ``int(L·(1-ratio))`` tokens with the lowest noise, in ascending-noise order, the same number for
    every sample. ``grid`` is the tokenizer's :attr:`Tokenizer.grid`.

    **Given ``noise``, the result must be a function of ``noise`` and ``grid`` alone, row by row.**
    The trainer draws ``U[0,1)`` noise for the whole global batch from the run seed and the step
    and hands each rank its rows, so a masker that drew its own random numbers (or looked at the
    rank or at the other rows) would change with a resume or with the number of devices. A
    structured masker therefore derives its structure from the noise too: the built-in ones rank
    the time columns (frequency rows) of sample ``i`` by the noise of its first grid row (column)
    and force the highest-ranked lines out by setting their noise to 1.1. Without ``noise`` the
    masker draws ``U[0,1)`` noise itself and proceeds the same way.

    The kept count may vary per optimiser step (multi-ratio masking): a masker with a method
    ``set_training_step(*, seed, step)`` is told each step before its forward passes
    (:func:`cavkit.models.maskers.announce_training_step`) and must derive the step's ratio from
    ``(seed, step)`` alone, so that every rank and a resumed run keep the same count.
    """

    def __call__(self, tokens: Tensor, noise: Tensor | None, *, grid: tuple[int, int] | None = None) -> Masked:
        """Mask ``tokens [B,L,D]``."""

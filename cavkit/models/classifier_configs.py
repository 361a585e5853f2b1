"""Parameters of the Sync clip classifier, its frame aggregators and the audio-only classifier.

attrs only, no torch import (``cavkit components show`` stays fast). Defaults are the published
full-size widths; what the dev fine-tuning code did (spec §5.5, §7.3) is noted where a default
follows it.
"""

from __future__ import annotations

from typing import Literal

import attrs

from cavkit.config import ComponentNode, at_least, component, param

SyncModality = Literal["audio", "visual", "both"]
FrameToken = Literal["global", "pooled"]


# -- aggregators ---------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class MeanAggregatorConfig:
    """Mean over the frame axis: ``[B,K,W] -> [B,W]``; no parameters."""


@attrs.frozen(kw_only=True)
class AttentionAggregatorConfig:
    """A learned query token prepended to the frame sequence, transformer blocks, a norm; the query's
    output is the clip feature (the dev code's ``self_attention_cls``: 2 blocks, 12 heads; spec §5.5)."""

    depth: int = param(2, help="transformer blocks over [query; frames]", validator=at_least(1))
    num_heads: int = param(12, help="attention heads (must divide the frame-feature width)", validator=at_least(1))
    mlp_ratio: float = param(4.0, help="MLP hidden width / frame-feature width", validator=at_least(0.0))


# -- the Sync clip classifier ---------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class SyncClassifierConfig:
    """CAV-MAE Sync clip classifier: per-frame features of K frames (each with its own audio
    segment), aggregated over frames, then LayerNorm + Linear (spec §5.5, reworked)."""

    num_classes: int = param(527, help="number of classes C (527 AudioSet, 309 VGGSound)", validator=at_least(1))
    modality: SyncModality = param(
        "both", help="which per-frame features feed the aggregator: audio, visual, or both (concatenated, width 2D)"
    )
    frame_token: FrameToken = param(
        "global",
        help="per-frame feature: the global token (Sync cls_token, needs global tokens) or the mean of the patch tokens",
    )
    audio_length: int = param(
        416, help="fbank rows per frame segment (the data's segment_length)", validator=at_least(1)
    )
    image_size: int = param(224, help="image side H = W in pixels", validator=at_least(1))
    embed_dim: int = param(768, help="encoder width D", validator=at_least(1))
    trainable_pos: bool = param(True, help="train the position embeddings (upstream FT default tr_pos=True)")
    audio_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="audio_patch", help="fbank segment to patch tokens"
    )
    visual_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="image_patch", help="frame to patch tokens"
    )
    encoder: ComponentNode | None = component("encoder", default_type="sync_encoder", help="the encoder")
    aggregator: ComponentNode | None = component(
        "aggregator", default_type="attention", help="frame features [B,K,W] to a clip feature"
    )


# -- the audio-only classifier (upstream CAVMAEFTAudio) ------------------------------------------
@attrs.frozen(kw_only=True)
class AudioEncoderConfig:
    """The CAV-MAE encoder without its visual stack: ``blocks_a``, the joint blocks run with the
    audio norms, ``norm_a`` (and the unused ``norm``), as upstream ``CAVMAEFTAudio`` (spec §3.2)."""

    depth: int = param(11, help="audio-specific blocks (blocks_a)", validator=at_least(0))
    joint_depth: int = param(1, help="shared joint blocks (blocks_u), run with the audio norms", validator=at_least(1))
    num_heads: int = param(12, help="attention heads", validator=at_least(1))
    mlp_ratio: float = param(4.0, help="MLP hidden width / model width", validator=at_least(0.0))
    attn_impl: Literal["sdpa", "eager"] = param("sdpa", help="sdpa or eager attention")


@attrs.frozen(kw_only=True)
class AudioClassifierConfig:
    """Audio-only classifier with the 252-key ``CAVMAEFTAudio`` layout (spec §3.2, §4.4)."""

    num_classes: int = param(527, help="number of classes C", validator=at_least(1))
    audio_length: int = param(1024, help="fbank frames T per example", validator=at_least(1))
    embed_dim: int = param(768, help="encoder width D", validator=at_least(1))
    trainable_pos: bool = param(True, help="train the position embeddings (upstream tr_pos=True)")
    audio_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="audio_patch", help="fbank to patch tokens"
    )
    encoder: AudioEncoderConfig = param(factory=AudioEncoderConfig, help="the audio-only encoder")

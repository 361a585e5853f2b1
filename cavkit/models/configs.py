"""Parameters of the model parts (attrs; no torch import, so ``cavkit components show`` stays fast).

Defaults are the published full-size values (spec §2, §4.5). Widths shared by several parts
(``embed_dim``, ``audio_length``, ``image_size``) live on the model and are handed to the parts
when the model builds them, so they cannot disagree.
"""

from __future__ import annotations

from typing import Literal

import attrs

from cavkit.config import ComponentNode, at_least, component, in_range, param

AttnImpl = Literal["sdpa", "eager"]


# -- tokenizers ----------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class AudioPatchConfig:
    """Audio fbank ``[B,T,128]`` to 16x16 patch tokens, frequency-major (spec §1.2)."""

    patch_size: int = param(16, help="patch side in fbank frames and mel bins", validator=at_least(1))
    num_mel_bins: int = param(128, help="mel bins F of the input fbank", validator=at_least(1))


@attrs.frozen(kw_only=True)
class ImagePatchConfig:
    """Image ``[B,3,H,W]`` to 16x16 patch tokens, row-major (spec §1.2)."""

    patch_size: int = param(16, help="patch side in pixels", validator=at_least(1))
    in_chans: int = param(3, help="image channels", validator=at_least(1))


# -- maskers -------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class MaskerConfig:
    """Random masking at a ratio; tokens with the lowest noise are kept (spec §2.2)."""

    ratio: float = param(
        0.75,
        help="fraction of tokens removed (eval mode, or every step without multi_ratio_masking)",
        validator=in_range(0.0, 0.999),
    )
    multi_ratio_masking: bool = param(
        False, help="Sync option: in training draw each step's ratio uniformly from ratio_range, from (seed, step)"
    )
    ratio_range: tuple[float, float] = param(
        (0.6, 0.9), help="[low, high] of multi_ratio_masking (published U(0.6, 0.9))"
    )

    def __attrs_post_init__(self) -> None:
        low, high = self.ratio_range
        if not 0.0 <= low <= high < 1.0:
            raise ValueError(f"ratio_range must be [low, high] with 0 <= low <= high < 1, got {list(self.ratio_range)}")


# -- encoder / decoder ---------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class _EncoderSize:
    depth: int = param(11, help="modality-specific blocks per modality (blocks_a, blocks_v)", validator=at_least(0))
    joint_depth: int = param(
        1, help="shared joint blocks (blocks_u); passes chain across blocks", validator=at_least(1)
    )
    num_heads: int = param(12, help="attention heads", validator=at_least(1))
    mlp_ratio: float = param(4.0, help="MLP hidden width / model width", validator=at_least(0.0))


_GLOBAL_HELP = "Sync global tokens cls_token_a/v (never masked, excluded from the joint pass)"
_REGISTER_HELP = "Sync register tokens per modality (dropped after the modality stacks unless kept)"
_HEADS_HELP = "extra blocks per modality on the contrastive branch (Sync option)"
_ATTN_HELP = "sdpa: fused scaled_dot_product_attention; eager: plain softmax baseline"
_KEEP_REG_HELP = (
    "Sync option: keep the register tokens through the joint layer (removed from every output after it); "
    "applies to the encoder's forward (pretraining, embeddings, sync_classifier), not to the classifier modes "
    "that call its stacks directly"
)
_SLICING_HELP = (
    "with keep_register_tokens: 'exact' removes the registers where they are (our fix); 'published' reproduces "
    "upstream: joint stream sliced at the unmasked audio count, embeddings keep the registers (for parity)"
)
RegisterSlicing = Literal["exact", "published"]


@attrs.frozen(kw_only=True)
class EncoderConfig(_EncoderSize):
    """Modality-specific stacks, then the shared joint layer run as three passes (spec §2.1, §5.1)."""

    global_tokens: bool = param(False, help=_GLOBAL_HELP)
    num_register_tokens: int = param(0, help=_REGISTER_HELP, validator=at_least(0))
    contrastive_head_depth: int = param(0, help=_HEADS_HELP, validator=at_least(0))
    keep_register_tokens: bool = param(False, help=_KEEP_REG_HELP)
    register_slicing: RegisterSlicing = param("exact", help=_SLICING_HELP)
    attn_impl: AttnImpl = param("sdpa", help=_ATTN_HELP)


def _in_base_order(cls: type, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
    """Keep a subclass's redefined fields where the base class has them (attrs moves them last), so
    that ``cavkit components show`` and stored recipes list the parameters in the same order."""
    order = [f.name for f in attrs.fields(cls.__mro__[1])]
    return sorted(fields, key=lambda f: order.index(f.name) if f.name in order else len(order))


@attrs.frozen(kw_only=True, field_transformer=_in_base_order)
class SyncEncoderConfig(EncoderConfig):
    """The CAV-MAE Sync encoder as released: global tokens on, 8 registers per modality (spec §4.5).

    The parameters of :class:`EncoderConfig`; only these two defaults differ.
    """

    global_tokens: bool = param(True, help=_GLOBAL_HELP)
    num_register_tokens: int = param(8, help=_REGISTER_HELP, validator=at_least(0))


@attrs.frozen(kw_only=True)
class DecoderConfig:
    """The MAE decoder over [audio; visual] tokens with per-modality prediction heads (spec §2.3)."""

    embed_dim: int = param(512, help="decoder width", validator=at_least(1))
    depth: int = param(8, help="decoder blocks", validator=at_least(1))
    num_heads: int = param(16, help="attention heads", validator=at_least(1))
    mlp_ratio: float = param(4.0, help="MLP hidden width / decoder width", validator=at_least(0.0))
    attn_impl: AttnImpl = param("sdpa", help="sdpa or eager attention")


# -- models --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CAVMAEConfig:
    """CAV-MAE pretraining model (spec §2). Defaults: the released full-size configuration."""

    audio_length: int = param(
        1024, help="fbank frames T per example (multiple of the patch size)", validator=at_least(1)
    )
    image_size: int = param(224, help="image side H = W in pixels", validator=at_least(1))
    embed_dim: int = param(768, help="encoder width D", validator=at_least(1))
    trainable_pos: bool = param(False, help="train the sin-cos position embeddings (upstream tr_pos)")
    audio_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="audio_patch", help="fbank to patch tokens"
    )
    visual_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="image_patch", help="image to patch tokens"
    )
    audio_masker: ComponentNode | None = component("masker", default_type="unstructured", help="audio masking")
    visual_masker: ComponentNode | None = component("masker", default_type="unstructured", help="visual masking")
    encoder: ComponentNode | None = component("encoder", default_type="cav_mae_encoder", help="the encoder")
    decoder: ComponentNode | None = component("decoder", default_type="mae_decoder", help="the MAE decoder")


@attrs.frozen(kw_only=True, field_transformer=_in_base_order)
class CAVMAESyncConfig(CAVMAEConfig):
    """CAV-MAE Sync pretraining model (spec §5): 416-frame audio segments, global and register tokens.

    The same parameters as :class:`CAVMAEConfig`; only two defaults differ.
    """

    audio_length: int = param(
        416, help="fbank frames T per audio segment (multiple of the patch size)", validator=at_least(1)
    )
    encoder: ComponentNode | None = component("encoder", default_type="sync_encoder", help="the encoder")


ClassifierMode = Literal["multimodal", "audioonly", "videoonly", "missingaudioonly", "missingvideoonly"]


@attrs.frozen(kw_only=True)
class ClassifierConfig:
    """Classifier over a CAV-MAE or Sync encoder with head LayerNorm + Linear (spec §3.1)."""

    num_classes: int = param(527, help="number of classes C (527 AudioSet, 309 VGGSound)", validator=at_least(1))
    mode: ClassifierMode = param("multimodal", help="which inputs and passes feed the head (spec §3.1)")
    audio_length: int = param(1024, help="fbank frames T per example", validator=at_least(1))
    image_size: int = param(224, help="image side in pixels", validator=at_least(1))
    embed_dim: int = param(768, help="encoder width D", validator=at_least(1))
    trainable_pos: bool = param(True, help="train the position embeddings (upstream FT default tr_pos=True)")
    audio_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="audio_patch", help="fbank to patch tokens"
    )
    visual_tokenizer: ComponentNode | None = component(
        "tokenizer", default_type="image_patch", help="image to patch tokens"
    )
    encoder: ComponentNode | None = component("encoder", default_type="cav_mae_encoder", help="the encoder")

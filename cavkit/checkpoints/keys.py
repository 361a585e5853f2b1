"""Upstream <-> cavkit state-dict key names (spec §4). No torch import.

Upstream keys are flat on the model (``patch_embed_a.proj.weight``, ``blocks_u.0.attn.qkv.weight``,
``decoder_pred_v.bias``, ``mlp_head.1.weight``); cavkit nests them under the part that owns them
(``audio_tokenizer.proj.weight``, ``encoder.blocks_u.0.attn.qkv.weight``, ``decoder.pred_v.bias``,
``head.1.weight``). Only the first dotted component changes, so the mapping is a table.
"""

from __future__ import annotations

#: first upstream key component -> cavkit prefix, in upstream state-dict order (spec §4.1)
UPSTREAM_TO_CAVKIT: dict[str, str] = {
    "modality_a": "audio_tokenizer.modality",
    "modality_v": "visual_tokenizer.modality",
    "pos_embed_a": "audio_tokenizer.pos_embed",
    "pos_embed_v": "visual_tokenizer.pos_embed",
    "register_tokens": "encoder.register_tokens",
    "mask_token": "decoder.mask_token",
    "decoder_modality_a": "decoder.modality_a",
    "decoder_modality_v": "decoder.modality_v",
    "decoder_pos_embed_a": "decoder.pos_embed_a",
    "decoder_pos_embed_v": "decoder.pos_embed_v",
    "cls_token_a": "encoder.cls_token_a",
    "cls_token_v": "encoder.cls_token_v",
    "patch_embed_a": "audio_tokenizer",
    "patch_embed_v": "visual_tokenizer",
    "blocks_a": "encoder.blocks_a",
    "blocks_v": "encoder.blocks_v",
    "blocks_u": "encoder.blocks_u",
    # upstream Sync registers its (misspelt) contrastive heads between blocks_u and the norms
    "constrative_head_audio": "encoder.contrastive_head_audio",
    "constrative_head_visual": "encoder.contrastive_head_visual",
    "norm_a": "encoder.norm_a",
    "norm_v": "encoder.norm_v",
    "norm": "encoder.norm",
    "decoder_embed": "decoder.embed",
    "decoder_blocks": "decoder.blocks",
    "decoder_norm": "decoder.norm",
    "decoder_pred_a": "decoder.pred_a",
    "decoder_pred_v": "decoder.pred_v",
    "mlp_head": "head",
}
_CAVKIT_TO_UPSTREAM = {v: k for k, v in UPSTREAM_TO_CAVKIT.items()}
_ORDER = {k: i for i, k in enumerate(UPSTREAM_TO_CAVKIT)}
#: ``patch_embed_a.proj.*`` lives under the tokenizer as ``proj.*``
_PATCH_EMBED = {"patch_embed_a": "audio_tokenizer", "patch_embed_v": "visual_tokenizer"}

DATAPARALLEL_PREFIX = "module."


def strip_dataparallel(keys_or_dict):
    """Remove the ``module.`` prefix that every official checkpoint carries (spec §4.1)."""
    return {
        (k.removeprefix(DATAPARALLEL_PREFIX)): v for k, v in keys_or_dict.items()
    }


def upstream_to_cavkit(key: str) -> str | None:
    """``blocks_u.0.norm1_a.weight -> encoder.blocks_u.0.norm1_a.weight``; ``None`` for unknown keys."""
    head, _, rest = key.partition(".")
    target = UPSTREAM_TO_CAVKIT.get(head)
    if target is None:
        return None
    return f"{target}.{rest}" if rest else target


def cavkit_to_upstream(key: str) -> str | None:
    """Inverse of :func:`upstream_to_cavkit` (longest matching prefix); ``None`` for unknown keys."""
    parts = key.split(".")
    for n in range(min(len(parts), 3), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in _CAVKIT_TO_UPSTREAM:
            rest = ".".join(parts[n:])
            if prefix in _PATCH_EMBED.values() and not rest.startswith("proj."):
                continue
            up = _CAVKIT_TO_UPSTREAM[prefix]
            return f"{up}.{rest}" if rest else up
    return None


def upstream_order(key: str) -> int:
    """Sort key reproducing upstream state-dict order (own parameters first, then sub-modules)."""
    return _ORDER.get(key.partition(".")[0], len(_ORDER))

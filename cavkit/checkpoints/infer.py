"""Infer a model recipe node from upstream state-dict keys and shapes (spec §4.6). No torch import.

Attention head counts are not stored in checkpoints: they are taken as width/64 for the encoder and
width/32 for the decoder (the published 12 and 16 heads); other models need an explicit override
such as ``encoder.num_heads=2``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from cavkit.errors import CheckpointError

ENCODER_HEAD_DIM = 64
DECODER_HEAD_DIM = 32

_REQUIRED = (
    "pos_embed_a",
    "pos_embed_v",
    "patch_embed_a.proj.weight",
    "patch_embed_v.proj.weight",
    "blocks_u.0.attn.qkv.weight",
)


def _count(keys, prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return len({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def _heads(width: int, head_dim: int) -> int | None:
    return None if width % head_dim else width // head_dim


def check_heads(node: Mapping[str, Any], source: str) -> None:
    """Raise if a head count could not be inferred and no override supplied it."""
    for part, head_dim in (("encoder", ENCODER_HEAD_DIM), ("decoder", DECODER_HEAD_DIM)):
        sub = node.get(part)
        if isinstance(sub, dict) and sub.get("num_heads") is None:
            width = node["embed_dim"] if part == "encoder" else sub.get("embed_dim")
            raise CheckpointError(
                f"{source}: cannot infer the attention heads of the {width}-wide {part} (the published models "
                f"use {head_dim}-wide heads); pass them explicitly, e.g. --set {part}.num_heads=N"
            )


def describe_keys(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:6])
    return f"{len(keys)} keys ({shown}{', ...' if len(keys) > 6 else ''})"


def _is_audio_only(state: Mapping[str, Any]) -> bool:
    """The 252-key ``CAVMAEFTAudio`` layout: an audio encoder and a head, no visual key (spec §3.2)."""
    return "mlp_head.1.weight" in state and "pos_embed_a" in state and not any(
        k.startswith(("pos_embed_v", "patch_embed_v.", "blocks_v.", "modality_v", "norm_v.")) for k in state
    )


def _audio_only_node(state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The ``audio_classifier`` node of a ``CAVMAEFTAudio`` state dict."""
    missing = [k for k in ("patch_embed_a.proj.weight", "blocks_u.0.mlp.fc1.weight") if k not in state]
    if missing:
        raise CheckpointError(
            f"{source}: an audio-only classifier checkpoint (CAVMAEFTAudio) lacks {', '.join(missing)}; "
            f"it holds {describe_keys(state)}"
        )
    conv_a = tuple(state["patch_embed_a.proj.weight"].shape)
    embed_dim, patch = conv_a[0], conv_a[-1]
    num_audio = tuple(state["pos_embed_a"].shape)[1]
    if num_audio % (128 // patch):
        raise CheckpointError(f"{source}: unexpected audio position-embedding shape {tuple(state['pos_embed_a'].shape)}")
    keys = list(state)
    return {
        "type": "audio_classifier",
        "num_classes": tuple(state["mlp_head.1.weight"].shape)[0],
        "audio_length": num_audio // (128 // patch) * patch,
        "embed_dim": embed_dim,
        "audio_tokenizer": {"type": "audio_patch", "patch_size": patch},
        "encoder": {
            "depth": _count(keys, "blocks_a"),
            "joint_depth": _count(keys, "blocks_u"),
            "num_heads": _heads(embed_dim, ENCODER_HEAD_DIM),
            "mlp_ratio": tuple(state["blocks_u.0.mlp.fc1.weight"].shape)[0] / embed_dim,
        },
    }


def infer_model_node(state: Mapping[str, Any], *, source: str = "checkpoint") -> dict[str, Any]:
    """A ``model:`` recipe node rebuilding the upstream model whose (prefix-free) ``state`` is given.

    Head counts that cannot be inferred are ``None``; see :func:`check_heads`.

    :returns: e.g. ``{"type": "cav_mae_sync", "audio_length": 416, "embed_dim": 768, "encoder": {...}, ...}``
        (``audio_classifier`` for the audio-only ``CAVMAEFTAudio`` layout)
    :raises CheckpointError: when the keys are not those of a CAV-MAE / Sync / fine-tuned model.
    """
    if _is_audio_only(state):
        return _audio_only_node(state, source)
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(
            f"{source}: not a CAV-MAE or CAV-MAE Sync checkpoint: missing {', '.join(missing)}; "
            f"it holds {describe_keys(state)}"
        )
    shape = lambda k: tuple(state[k].shape)
    conv_a = shape("patch_embed_a.proj.weight")
    conv_v = shape("patch_embed_v.proj.weight")
    embed_dim, patch = conv_a[0], conv_a[-1]
    num_audio = shape("pos_embed_a")[1]
    num_visual = shape("pos_embed_v")[1]
    mel_rows = 128 // patch
    side = math.isqrt(num_visual)
    if num_audio % mel_rows or side * side != num_visual:
        raise CheckpointError(
            f"{source}: unexpected position-embedding shapes {shape('pos_embed_a')} / {shape('pos_embed_v')}"
        )
    keys = list(state)
    has_globals = "cls_token_a" in state
    registers = shape("register_tokens")[0] // 2 if "register_tokens" in state else 0
    head_depth = _count(keys, "constrative_head_audio")
    encoder = {
        "type": "sync_encoder" if (has_globals or registers or head_depth) else "cav_mae_encoder",
        "depth": _count(keys, "blocks_a"),
        "joint_depth": _count(keys, "blocks_u"),
        "num_heads": _heads(embed_dim, ENCODER_HEAD_DIM),
        "mlp_ratio": shape("blocks_u.0.mlp.fc1.weight")[0] / embed_dim,
        "global_tokens": has_globals,
        "num_register_tokens": registers,
        "contrastive_head_depth": head_depth,
    }
    if conv_v[1] != 3 or conv_a[1] != 1:
        raise CheckpointError(f"{source}: unexpected patch-embedding input channels {conv_a} / {conv_v}")
    node: dict[str, Any] = {
        "audio_length": num_audio // mel_rows * patch,
        "image_size": side * patch,
        "embed_dim": embed_dim,
        "audio_tokenizer": {"type": "audio_patch", "patch_size": patch},
        "visual_tokenizer": {"type": "image_patch", "patch_size": patch},
        "encoder": encoder,
    }
    if "mlp_head.1.weight" in state:
        node = {"type": "classifier", "num_classes": shape("mlp_head.1.weight")[0], **node}
        return node
    if "decoder_embed.weight" not in state:
        raise CheckpointError(
            f"{source}: encoder weights without a decoder (decoder_embed.*) or a classification head (mlp_head.*); "
            "cannot tell which model this is"
        )
    dec_dim = shape("decoder_embed.weight")[0]
    node["type"] = "cav_mae_sync" if encoder["type"] == "sync_encoder" else "cav_mae"
    node["decoder"] = {
        "type": "mae_decoder",
        "embed_dim": dec_dim,
        "depth": _count(keys, "decoder_blocks"),
        "num_heads": _heads(dec_dim, DECODER_HEAD_DIM),
        "mlp_ratio": shape("decoder_blocks.0.mlp.fc1.weight")[0] / dec_dim
        if "decoder_blocks.0.mlp.fc1.weight" in state
        else 4.0,
    }
    return node

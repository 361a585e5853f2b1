"""Initialising CAV-MAE / CAV-MAE Sync from a timm ViT (the ImageNet-MAE initialisation, spec §4.7).

``init: timm:vit_base_patch16_224.mae`` (``trainer.init``) builds the encoder
initialisation that upstream's ``IN-initial.pth`` holds, from any timm ViT whose depth equals the
model's modality-specific depth plus its joint depth (ViT-B/16: 11 + 1):

=====================================  ==========================================================
cavkit (upstream) target               timm source
=====================================  ==========================================================
``blocks_a.i``, ``blocks_v.i``, i<M    ``blocks.i`` (``norm1``, ``attn``, ``norm2``, ``mlp``)
``blocks_u.j``                         ``blocks.M+j``; its ``norm1_a``/``norm1_v`` and
                                       ``norm2_a``/``norm2_v`` are copies of ``norm1`` / ``norm2``
``norm``, ``norm_a``, ``norm_v``       ``norm``
``patch_embed_v``                      ``patch_embed.proj``
``patch_embed_a`` weight [D,1,p,p]     sum over the RGB input channels of ``patch_embed.proj.weight``
``patch_embed_a`` bias                 ``patch_embed.proj.bias``
``pos_embed_v``                        ``pos_embed[:, 1:]`` (the class token's row dropped), when
                                       the shapes agree; otherwise the model's own sin-cos stays
=====================================  ==========================================================

Everything else keeps the model's fresh initialisation (spec §1.4), and the report says so: the
whole MAE decoder (timm checkpoints carry none, unlike ``mae_pretrain_vit_base_full.pth``), the audio
position embeddings, the modality embeddings, the ``_a``/``_v`` norms of the modality-specific
blocks (never used), Sync's global and register tokens and any classifier head.

``timm:NAME`` loads timm's pretrained weights for NAME (timm downloads them, or uses its hub cache,
when the user runs this: an explicit choice, never done by tests); ``timm:NAME=FILE`` reads FILE
instead (a local path, ``weights:NAME`` or an ``http(s)://...#sha256=`` URL), through timm's own
checkpoint filter, so original MAE ``.pth`` files work too.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import torch

from cavkit.errors import CheckpointError

TIMM_SCHEME = "timm:"
_BLOCK = re.compile(r"^encoder\.(blocks_[auv])\.(\d+)\.(.+)$")
_FRESH_GROUPS = (
    ("decoder.", "the MAE decoder (timm checkpoints have none)"),
    ("audio_tokenizer.pos_embed", "audio position embeddings (fixed sin-cos)"),
    ("visual_tokenizer.pos_embed", "visual position embeddings (shape differs from the ViT's)"),
    ("audio_tokenizer.modality", "modality embeddings"),
    ("visual_tokenizer.modality", "modality embeddings"),
    ("encoder.cls_token", "global tokens"),
    ("encoder.register_tokens", "register tokens"),
    ("encoder.contrastive_head", "contrastive heads"),
    ("head.", "the classifier head"),
)


def parse_timm_ref(uri: str) -> tuple[str, str | None]:
    """``timm:NAME`` -> ``(NAME, None)``; ``timm:NAME=FILE`` -> ``(NAME, FILE)``."""
    body = uri.removeprefix(TIMM_SCHEME)
    name, sep, file = body.partition("=")
    if not name or (sep and not file):
        raise CheckpointError(f"{uri}: expected 'timm:MODEL_NAME' or 'timm:MODEL_NAME=FILE'")
    return name, (file or None)


def timm_state_dict(name: str, file: str | None, *, host: Any = None) -> dict[str, torch.Tensor]:
    """The state dict of timm model ``name`` with its pretrained weights (from ``file`` if given;
    ``host`` names ``weights:`` entries, see :func:`cavkit.checkpoints.build.plugin_host`)."""
    import timm

    kwargs: dict = {"pretrained": True, "num_classes": 0}
    if file is not None:
        from cavkit.checkpoints.build import plugin_host
        from cavkit.weights.resolve import resolve_checkpoint_uri

        local = resolve_checkpoint_uri(file, plugin_host(host) if file.startswith("weights:") else None)
        if not os.path.isfile(local):
            raise CheckpointError(f"timm:{name}={file}: checkpoint file not found")
        kwargs["pretrained_cfg_overlay"] = {"file": local}
    try:
        model = timm.create_model(name, **kwargs)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown names and for mis-shaped files
        raise CheckpointError(f"timm:{name}: {str(exc).splitlines()[0][:300]}") from None
    return {k: v.detach() for k, v in model.state_dict().items()}


def _depths(own: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    specific, joint = set(), set()
    for key in own:
        match = _BLOCK.match(key)
        if match:
            (joint if match.group(1) == "blocks_u" else specific).add(int(match.group(2)))
    return len(specific), len(joint)


def map_timm_state(
    timm_state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], *, source: str = "timm"
) -> dict[str, tuple[torch.Tensor, str]]:
    """``{cavkit key: (tensor, timm source key)}`` for every model tensor the ViT initialises.

    :param timm_state: a timm ``VisionTransformer`` state dict (``blocks.i.*``, ``patch_embed.proj.*``,
        ``pos_embed`` [1, 1+N, D], ``norm.*``).
    :param own: the target model's state dict (cavkit keys), used for its depths and shapes.
    :raises CheckpointError: depth or width mismatch, named with both values.
    """
    specific, joint = _depths(own)
    timm_depth = len({int(k.split(".")[1]) for k in timm_state if k.startswith("blocks.")})
    if timm_depth != specific + joint:
        raise CheckpointError(
            f"{source}: the ViT has {timm_depth} blocks, the model needs {specific} modality-specific + {joint} "
            f"joint = {specific + joint}; pick a ViT of that depth or change encoder.depth"
        )
    mapped: dict[str, tuple[torch.Tensor, str]] = {}

    def put(target: str, tensor: torch.Tensor, origin: str) -> None:
        if target in own:
            mapped[target] = (tensor, origin)

    for key in own:
        match = _BLOCK.match(key)
        if not match:
            continue
        stack, index, rest = match.group(1), int(match.group(2)), match.group(3)
        vit_index = index + specific if stack == "blocks_u" else index
        # the modality norms of the joint block copy the plain ones; in the modality stacks they stay fresh
        plain = re.sub(r"^(norm[12])_[av]\.", r"\1.", rest)
        if plain != rest and stack != "blocks_u":
            continue
        origin = f"blocks.{vit_index}.{plain}"
        if origin in timm_state:
            put(key, timm_state[origin], origin)
    for norm in ("norm", "norm_a", "norm_v"):
        for p in ("weight", "bias"):
            put(f"encoder.{norm}.{p}", timm_state[f"norm.{p}"], f"norm.{p}")
    weight, bias = timm_state["patch_embed.proj.weight"], timm_state["patch_embed.proj.bias"]
    put("visual_tokenizer.proj.weight", weight, "patch_embed.proj.weight")
    put("visual_tokenizer.proj.bias", bias, "patch_embed.proj.bias")
    put("audio_tokenizer.proj.weight", weight.sum(dim=1, keepdim=True), "patch_embed.proj.weight (sum over RGB)")
    put("audio_tokenizer.proj.bias", bias, "patch_embed.proj.bias")
    pos = timm_state.get("pos_embed")
    target = own.get("visual_tokenizer.pos_embed")
    if pos is not None and target is not None:
        prefix = pos.shape[1] - target.shape[1]
        if prefix >= 0 and tuple(pos[:, prefix:].shape) == tuple(target.shape):
            put("visual_tokenizer.pos_embed", pos[:, prefix:], f"pos_embed[:, {prefix}:]")
    bad = [
        f"{k}: ViT {list(t.shape)} ({o}), model {list(own[k].shape)}"
        for k, (t, o) in mapped.items()
        if tuple(t.shape) != tuple(own[k].shape)
    ]
    if bad:
        raise CheckpointError(
            f"{source}: the ViT does not fit the model (width or patch size differ):\n  " + "\n  ".join(bad[:10])
        )
    return mapped


def describe_fresh(fresh: list[str]) -> list[str]:
    """Human names of the groups of ``fresh`` keys (``the MAE decoder``, ``register tokens``, ...)."""
    out: list[str] = []
    for key in fresh:
        label = next((text for prefix, text in _FRESH_GROUPS if key.startswith(prefix)), None)
        if label is None and _BLOCK.match(key):
            label = "the unused _a/_v norms of the modality-specific blocks"
        label = label or key
        if label not in out:
            out.append(label)
    return out


def init_from_timm(model: torch.nn.Module, uri: str, *, host: Any = None) -> dict[str, list[str]]:
    """Initialise ``model`` from the timm ViT named by ``uri`` (see the module docstring).

    :returns: ``{"loaded": [...], "fresh": [...], "ignored": [...]}`` (cavkit keys; ignored are timm keys).
    """
    name, file = parse_timm_ref(uri)
    timm_state = timm_state_dict(name, file, host=host)
    own = model.state_dict()
    mapped = map_timm_state(timm_state, own, source=uri)
    with torch.no_grad():
        for key, (tensor, _) in mapped.items():
            own[key].copy_(tensor)
    used = {origin.split(" ")[0] for _, origin in mapped.values()}
    used |= {"pos_embed"} if "visual_tokenizer.pos_embed" in mapped else set()
    report = {
        "loaded": list(mapped),
        "fresh": [k for k in own if k not in mapped],
        "ignored": [k for k in timm_state if k not in used],
    }
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"cavkit: {uri}: {len(report['loaded'])} tensors from the ViT; freshly initialised: "
            f"{', '.join(describe_fresh(report['fresh'])) or 'nothing'}",
            file=sys.stderr,
        )
    return report

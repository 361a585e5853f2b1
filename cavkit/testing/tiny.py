"""Tiny ``model:`` recipe nodes of the built-in models, for tests that need a real model fast.

The published sizes (ViT-B, 1024 fbank frames, 224-pixel images; spec §2, §4.5) take seconds to
build; these take milliseconds and still run every part of the model::

    from cavkit.testing import save_model_weights, tiny_model

    node = tiny_model("cav_mae_sync", decoder={"embed_dim": 16})
    path = save_model_weights(node, tmp_path / "sync.safetensors")

Every node has width ``embed_dim = 32``, one modality block per modality (``depth: 1``) and two
attention heads; the inputs each model takes (16x16 patches, spec §1.2):

* ``cav_mae``: ``audio [B,32,128]`` (32 fbank frames, 2x8 patches), ``image [B,3,32,32]``
  (2x2 patches); a 1-block MAE decoder of width 32.
* ``cav_mae_sync``: one frame and its audio segment, ``audio [B,32,128]``, ``image [B,3,32,32]``;
  the Sync encoder with global tokens and 2 register tokens per modality, the same decoder.
* ``classifier``: ``audio [B,32,128]``, ``image [B,3,32,32]`` to ``logits [B,3]`` (3 classes).
* ``sync_classifier``: K frames with their segments, ``audio [B,K,32,128]``,
  ``image [B,K,3,32,32]``, to ``logits [B,3]``; an attention aggregator of 1 block and 2 heads
  over the concatenated ``[B,K,64]`` frame features.
* ``audio_classifier``: ``audio [B,32,128]`` (no image) to ``logits [B,3]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

_ENCODER = {"depth": 1, "num_heads": 2}
_DECODER = {"embed_dim": 32, "depth": 1, "num_heads": 2}
_SIZES = {"audio_length": 32, "image_size": 32, "embed_dim": 32}

TINY_MODELS: dict[str, dict[str, Any]] = {
    "cav_mae": {"type": "cav_mae", **_SIZES, "encoder": _ENCODER, "decoder": _DECODER},
    "cav_mae_sync": {
        "type": "cav_mae_sync",
        **_SIZES,
        "encoder": {**_ENCODER, "num_register_tokens": 2},
        "decoder": _DECODER,
    },
    "classifier": {"type": "classifier", "num_classes": 3, **_SIZES, "encoder": _ENCODER},
    "sync_classifier": {
        "type": "sync_classifier",
        "num_classes": 3,
        **_SIZES,
        "encoder": {**_ENCODER, "num_register_tokens": 2},
        "aggregator": {"depth": 1, "num_heads": 2},
    },
    "audio_classifier": {
        "type": "audio_classifier",
        "num_classes": 3,
        "audio_length": 32,
        "embed_dim": 32,
        "encoder": _ENCODER,
    },
}
"""The tiny node of each built-in model type; read them through :func:`tiny_model` (a fresh copy)."""


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        old = out.get(key)
        # a node naming its type is another component with other parameters: it replaces the old one
        if isinstance(value, Mapping) and isinstance(old, Mapping) and "type" not in value:
            out[key] = _merged(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_model(type_name: str, **overrides: Any) -> dict[str, Any]:
    """A fresh tiny ``model:`` recipe node of the built-in model ``type_name``.

    See the module docstring for the sizes and input shapes of each model. The node is a new deep
    copy on every call, so a test may change it freely.

    :param type_name: ``cav_mae``, ``cav_mae_sync``, ``classifier``, ``sync_classifier`` or
        ``audio_classifier``.
    :param overrides: fields to change. A dict merges into the nested node key by key
        (``encoder={"num_register_tokens": 0}`` keeps ``depth`` and ``num_heads``), unless it names
        a ``type``: then it replaces the node (``aggregator={"type": "mean"}``). Anything else
        replaces the field (``audio_length=128``).
    :returns: a plain dict, ready for :func:`cavkit.testing.save_model_weights`, a recipe's
        ``model:`` or :func:`cavkit.config.structure_node`.
    :raises KeyError: ``type_name`` is not one of the built-in models above.
    """
    if type_name not in TINY_MODELS:
        raise KeyError(f"no tiny node for model {type_name!r}; there are: {', '.join(TINY_MODELS)}")
    return _merged(TINY_MODELS[type_name], overrides)

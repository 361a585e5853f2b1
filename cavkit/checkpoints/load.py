"""Loading checkpoint weights into models: a checkpoint's own model, or a new model's matching part.

* :func:`load_model` builds the model a checkpoint describes and loads it strictly: official
  CAV-MAE / CAV-MAE Sync / fine-tuned ``.pth`` files (model inferred from keys and shapes, spec §4.6),
  cavkit ``.safetensors`` weights and cavkit training checkpoints (model from the stored recipe);
* :func:`init_from_checkpoint` initialises another model from the weights that fit (fine-tuning).

The jobs underneath, one module each: :mod:`~cavkit.checkpoints.read` (files to tensors),
:mod:`~cavkit.checkpoints.stored` (recipe and input declaration kept with them),
:mod:`~cavkit.checkpoints.build` (the model node, validated against a plugin host) and
:mod:`~cavkit.checkpoints.state_dict` (strict copying, keys reported by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cavkit.checkpoints.build import build_model_node, model_node_for
from cavkit.checkpoints.read import CheckpointContents, checkpoint_contents, read_checkpoint
from cavkit.checkpoints.state_dict import display_key, load_state_strict, to_cavkit_keys
from cavkit.errors import CheckpointError
from cavkit.models.inputs import InputSpec


def load_model(
    checkpoint: str | CheckpointContents,
    *,
    expect: str | None = None,
    overrides=None,
    device: str | torch.device | None = None,
    eval: bool = True,
    host: Any = None,
) -> torch.nn.Module:
    """Load any supported checkpoint into a ready model (strict; eval mode unless ``eval=False``).

    :param checkpoint: the checkpoint's URI, or its :class:`~cavkit.checkpoints.read.CheckpointContents`
        when the caller has read it already (the file is then not read again).
    :param expect: the model type the caller needs (``cav_mae``, ``cav_mae_sync``, ``classifier``);
        a checkpoint of another model is a :class:`CheckpointError`.
    :param overrides: ``["encoder.num_heads=2", ...]`` or a nested mapping applied to the model node
        (needed only for non-published head counts, which checkpoints do not record).
    :param host: the plugin host to validate the model node against (see :func:`~cavkit.checkpoints.build.build_model_node`).

    The model's input declaration (:class:`~cavkit.models.inputs.InputSpec`) is restored from the
    file when stored there and the model class declares none; otherwise
    :func:`cavkit.models.inputs.input_spec_of` derives it from ``model.cavkit_node``.
    """
    contents = checkpoint_contents(checkpoint, host=host)
    uri = contents.uri
    node_data = model_node_for(contents, overrides)
    if expect is not None and node_data.get("type") != expect:
        raise CheckpointError(
            f"{uri}: holds a {node_data.get('type')!r} model, expected {expect!r}" + _summary(node_data)
        )
    node = build_model_node(node_data, source=uri, host=host)
    model = node.build()
    load_state_strict(model, to_cavkit_keys(contents), source=uri, layout=contents.layout)
    model.cavkit_node = node  # the validated recipe node that rebuilds this model
    if contents.inputs is not None and not isinstance(getattr(model, "input_spec", None), InputSpec):
        model.input_spec = contents.inputs
    if device is not None:
        model.to(device)
    return model.eval() if eval else model


def _summary(node: Mapping[str, Any]) -> str:
    enc = node.get("encoder") or {}
    return (
        f" (audio_length {node.get('audio_length')}, global tokens {enc.get('global_tokens')}, "
        f"registers {enc.get('num_register_tokens')})"
    )


def init_from_checkpoint(model: torch.nn.Module, uri: str, *, host: Any = None) -> dict[str, list[str]]:
    """Initialise ``model`` from the matching weights of another model's checkpoint.

    Expected differences (spec §4.6, §7.3) are allowed: decoder weights into a classifier, a
    classifier head into a pretraining model, a fresh head when the checkpoint has none or another
    class count, and fresh sin-cos position embeddings where their shape differs (e.g. Sync's 416-frame
    audio from a 1024-frame initialisation). Everything else must match. A model may name more
    prefixes: ``init_fresh_prefixes`` (new parts that start fresh like the head, e.g. a Sync
    classifier's ``aggregator.``) and ``init_skipped_prefixes`` (checkpoint parts it has no place
    for, e.g. the visual side for an audio-only classifier).

    ``timm:VIT_NAME[=FILE]`` initialises from a timm ViT instead (spec §4.7 mapping, see
    :mod:`cavkit.checkpoints.timm_init`).

    :param host: the plugin host whose registry names ``weights:`` entries (see :func:`~cavkit.checkpoints.build.plugin_host`).
    :returns: ``{"loaded": [...], "fresh": [...], "ignored": [...]}`` (cavkit key names).
    """
    if uri.startswith("timm:"):
        from cavkit.checkpoints.timm_init import init_from_timm

        return init_from_timm(model, uri, host=host)
    contents = read_checkpoint(uri, host=host)
    state = to_cavkit_keys(contents)
    own = model.state_dict()
    new_parts = ("head.", *getattr(model, "init_fresh_prefixes", ()))
    skipped = ("decoder.", *new_parts, *getattr(model, "init_skipped_prefixes", ()))
    loaded, fresh, ignored, errors = [], [], [], []
    for k, v in own.items():
        if k not in state:
            if k.startswith(new_parts):
                fresh.append(k)
            else:
                errors.append(f"missing {display_key(k, contents.layout)}")
            continue
        if tuple(state[k].shape) != tuple(v.shape):
            if k.startswith(new_parts) or k.endswith(("pos_embed", "pos_embed_a", "pos_embed_v")):
                fresh.append(k)
            else:
                errors.append(
                    f"mis-shaped {display_key(k, contents.layout)}: checkpoint {list(state[k].shape)}, model {list(v.shape)}"
                )
            continue
        loaded.append(k)
    for k in state:
        if k not in own:
            if k.startswith(skipped):
                ignored.append(k)
            else:
                errors.append(f"unexpected {display_key(k, contents.layout)}")
    if errors:
        raise CheckpointError(f"{uri}: cannot initialise this model from it:\n  " + "\n  ".join(errors[:30]))
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(state[k])
    return {"loaded": loaded, "fresh": fresh, "ignored": ignored}

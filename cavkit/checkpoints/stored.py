"""What a checkpoint keeps beside its tensors: the model recipe and the model's input declaration.

* cavkit weights (``.safetensors``): metadata ``recipe`` (else a sidecar ``<name>.yaml`` or
  ``<name>.recipe.yaml``) and ``inputs``;
* cavkit training checkpoints (``format: cavkit.checkpoint``): the ``recipe`` and ``inputs`` entries;
* official ``.pth`` files keep neither (their model is inferred from keys, :mod:`cavkit.checkpoints.infer`).

Stored text is untrusted: recipes are parsed with the recipe limits, declarations with
:meth:`~cavkit.models.inputs.InputSpec.from_json`; anything unreadable is one :class:`CheckpointError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from cavkit.engine.checkpoint import FORMAT as TRAINING_FORMAT
from cavkit.errors import CheckpointError
from cavkit.models.inputs import InputSpec


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a ``torch.load``-ed object is a cavkit training checkpoint."""
    return isinstance(obj, Mapping) and obj.get("format") == TRAINING_FORMAT


def recipe_text_of(uri: str, meta: Mapping[str, str] | None, obj: Any = None) -> str | None:
    """The recipe text stored with a checkpoint: safetensors metadata ``recipe`` or a sidecar
    ``<name>.yaml`` / ``<name>.recipe.yaml`` (``meta`` given), or a training checkpoint's ``recipe``."""
    if meta is not None:
        return meta.get("recipe") or _sidecar_recipe(uri)
    if is_training_checkpoint(obj) and isinstance(obj.get("recipe"), str):
        return obj["recipe"]
    return None


def model_node_from_recipe(text: str, uri: str) -> dict[str, Any]:
    """The ``model:`` node of stored recipe text (a whole recipe, or a bare model node with ``type:``)."""
    from cavkit.recipe.load import RecipeLimitError, parse_yaml

    try:
        data = parse_yaml(text)  # untrusted: the recipe limits apply (size, depth, alias expansion)
    except RecipeLimitError as exc:
        raise CheckpointError(f"{uri}: the stored recipe is too large or deep ({exc})") from None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{uri}: the stored recipe is not valid YAML ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        return data["model"]
    if isinstance(data, dict) and "type" in data:
        return data
    raise CheckpointError(f"{uri}: the stored recipe has no 'model:' section")


def stored_inputs(uri: str, stored: Any) -> InputSpec | None:
    """The ``inputs`` declaration of safetensors metadata or a training checkpoint (``None``: not stored)."""
    text = stored.get("inputs") if isinstance(stored, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        return InputSpec.from_json(text)
    except ValueError as exc:
        raise CheckpointError(f"{uri}: the stored input declaration ('inputs') is unreadable: {exc}") from None


def _sidecar_recipe(uri: str) -> str | None:
    """The recipe file beside a weights file (``<name>.yaml``, ``<name>.recipe.yaml``), read with the
    recipe limits (:func:`cavkit.recipe.load.read_recipe_text`); ``None`` when there is none."""
    import fsspec

    from cavkit.errors import UsageError
    from cavkit.recipe.load import read_recipe_text
    from cavkit.weights.entry import is_weights_ref

    if is_weights_ref(uri):  # a fetched file has no sidecar; never probe the network for one
        return None
    stem = uri.removesuffix(".safetensors")
    for candidate in (f"{stem}.yaml", f"{stem}.recipe.yaml"):
        try:
            fs, path = fsspec.core.url_to_fs(candidate)
            if not fs.exists(path):
                continue
        except (OSError, ValueError):
            continue
        try:
            return read_recipe_text(candidate, regular_file=True)
        except UsageError as exc:
            raise CheckpointError(f"{uri}: cannot use the recipe beside it: {exc}") from None
    return None

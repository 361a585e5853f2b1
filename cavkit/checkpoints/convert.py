"""``cavkit convert``: official checkpoints to cavkit's format and back to the upstream layout.

* cavkit format: one ``.safetensors`` file with cavkit key names and, in its metadata, the recipe
  (``model:`` node, defaults filled in) that rebuilds the model; the same recipe is also written
  beside it as ``<name>.yaml`` so it can be read, edited or used as a recipe ``base:``;
* upstream layout: a ``torch.save`` state dict with the ``module.`` prefix and upstream key names
  in upstream order, which the published code loads (spec §4).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import torch
import yaml

from cavkit.checkpoints import keys as K
from cavkit.checkpoints.load import load_model
from cavkit.checkpoints.read import read_checkpoint
from cavkit.config import unstructure
from cavkit.errors import UsageError
from cavkit.io import write_bytes_atomic
from cavkit.models.inputs import input_metadata
from cavkit.safetensors_io import safetensors_bytes

CAVKIT_FORMAT = "cavkit.model"  # the ``format`` metadata of a cavkit .safetensors weights file


def model_recipe_text(model: torch.nn.Module) -> str:
    """The recipe (``cavkit: 1`` + ``model:``) that rebuilds ``model`` (loaded by :func:`load_model`)."""
    node = unstructure(model.cavkit_node)
    node.pop("init", None)
    return yaml.safe_dump({"cavkit": 1, "model": node}, sort_keys=False)


def cavkit_bytes(model: torch.nn.Module) -> tuple[bytes, str]:
    """``(safetensors bytes, recipe YAML)`` of a model loaded by :func:`load_model`."""
    recipe = model_recipe_text(model)
    metadata = {"format": CAVKIT_FORMAT, "recipe": recipe, **input_metadata(model)}
    return safetensors_bytes(model.state_dict(), metadata), recipe


def upstream_state_dict(model: torch.nn.Module, *, prefix: str = K.DATAPARALLEL_PREFIX) -> dict[str, torch.Tensor]:
    """The model's weights under upstream names and order, with the ``module.`` prefix (spec §4.1)."""
    out = {}
    for k, v in model.state_dict().items():
        up = K.cavkit_to_upstream(k)
        if up is None:
            raise UsageError(
                f"parameter {k!r} has no upstream equivalent; this model cannot be exported to the upstream layout"
            )
        out[up] = v.detach().cpu().clone()
    return {prefix + k: out[k] for k in sorted(out, key=K.upstream_order)}


def convert(src: str, dst: str, *, target: str = "auto", overrides: Iterable[str] = (), host: Any = None) -> list[str]:
    """Convert ``src`` to ``dst``; ``target`` is ``cavkit``, ``upstream`` or ``auto`` (the other layout).

    ``host``: the plugin host that validates the model and names ``weights:`` entries (see
    :func:`cavkit.checkpoints.build.plugin_host`).

    :returns: the URIs written.
    """
    contents = read_checkpoint(src, host=host)  # read once: its layout picks the target, then it loads
    if target == "auto":
        target = "cavkit" if contents.layout == "upstream" else "upstream"
    model = load_model(contents, overrides=list(overrides), host=host)
    if target == "cavkit":
        if not dst.endswith(".safetensors"):
            raise UsageError(f"{dst}: the cavkit format is a .safetensors file; name the output *.safetensors")
        data, recipe = cavkit_bytes(model)
        sidecar = dst[: -len(".safetensors")] + ".yaml"
        write_bytes_atomic(dst, data)
        write_bytes_atomic(sidecar, recipe.encode())
        return [dst, sidecar]
    if target == "upstream":
        buffer = io.BytesIO()
        torch.save(upstream_state_dict(model), buffer)
        write_bytes_atomic(dst, buffer.getvalue())
        return [dst]
    raise UsageError(f"unknown conversion target {target!r}; use cavkit, upstream or auto")

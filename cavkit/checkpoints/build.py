"""The model node of a checkpoint, validated against a plugin host's registry.

A checkpoint's node is the recipe ``model:`` it stores, or for official files the node inferred
from upstream keys and shapes (spec §4.6, :mod:`cavkit.checkpoints.infer`); overrides such as
``encoder.num_heads=2`` apply on top, then :func:`build_model_node` checks it like a recipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from cavkit.checkpoints import keys as K
from cavkit.checkpoints.infer import check_heads, infer_model_node
from cavkit.config import ComponentNode, component, structure

if TYPE_CHECKING:
    from cavkit.checkpoints.read import CheckpointContents


def plugin_host(host: Any) -> Any:
    """``host``, or for ``None`` (direct API use, e.g. ``cavkit.api.load_model(path)``) the plugins
    installed in this process: the one place under :mod:`cavkit.checkpoints` that reads that host."""
    if host is not None:
        return host
    from cavkit.plugins import get_plugin_host

    return get_plugin_host()


@attrs.frozen(kw_only=True)
class _ModelSlot:
    model: ComponentNode = component("model")


def build_model_node(data: Mapping[str, Any], *, source: str = "model", host: Any = None) -> ComponentNode:
    """Validate a ``model:`` recipe node (a mapping with ``type:``) against ``host``'s registry.

    :param host: the :class:`~cavkit.plugins.PluginHost` whose components may be named; commands pass
        theirs. ``None`` (direct API use, e.g. ``cavkit.api.load_model(path)``) means the plugins
        installed in this process.
    """
    from cavkit.errors import RecipeError

    host = plugin_host(host)
    slot, problems = structure(
        _ModelSlot, {"model": dict(data)}, registry=host.registry, failed_plugins=host.failed_names()
    )
    if problems:
        raise RecipeError(source, problems)
    return slot.model


def apply_model_overrides(
    node: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any] | None, source: str
) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (or a nested mapping) to a model node."""
    from cavkit.recipe.load import apply_overrides, deep_merge

    if not overrides:
        return node
    if isinstance(overrides, Mapping):
        return deep_merge(node, dict(overrides))
    return apply_overrides(node, list(overrides), source)


def model_node_for(contents: CheckpointContents, overrides=None) -> dict[str, Any]:
    """The model node of a checkpoint: stored, or inferred from (upstream-named) keys, then overridden."""
    if contents.node is not None:
        node = dict(contents.node)
        node.pop("init", None)  # the stored weights replace any initialisation; its file may be gone
    else:
        upstream = (
            contents.state
            if contents.layout == "upstream"
            else {K.cavkit_to_upstream(k) or k: v for k, v in contents.state.items()}
        )
        node = infer_model_node(upstream, source=contents.uri)
    node = apply_model_overrides(node, overrides, contents.uri)
    check_heads(node, contents.uri)
    return node

"""Building a model's nested component slots (a :class:`~cavkit.config.ComponentNode` or ``None``)."""

from __future__ import annotations

from typing import Any


def build_slot(node: Any, kind: str, default_type: str, **context: Any) -> Any:
    """Build ``node`` with ``context``; for ``None`` build ``default_type`` with its default parameters."""
    if node is not None:
        return node.build(**context)
    from cavkit.plugins import get_plugin_host

    spec = get_plugin_host().registry.get(kind, default_type)
    return spec.build(spec.config_class()(), **context)

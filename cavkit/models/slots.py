"""Building a model's nested component slots from their validated :class:`~cavkit.config.ComponentNode`."""

from __future__ import annotations

from typing import Any


def build_slot(node: Any, kind: str, default_type: str, **context: Any) -> Any:
    """Build ``node`` with ``context`` (the shared widths and sizes the owner passes down).

    Default parts are resolved when the recipe is validated (:func:`cavkit.config.structure` fills
    ``{type: default_type}`` into an absent or ``null`` slot), so a model is built from its node
    alone, without the process's plugin host.

    :raises ValueError: ``node`` is ``None``: the config was built by hand, not validated.
    """
    if node is None:
        raise ValueError(
            f"the {kind} slot of this model config is empty (its default is {default_type!r}): build model "
            "configs by validating a recipe node (cavkit.config.structure_node, cavkit.recipe.load_recipe), "
            "which fills in default parts"
        )
    return node.build(**context)

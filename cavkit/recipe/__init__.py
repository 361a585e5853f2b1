"""YAML recipes: load (with ``base:`` and ``--set``), validate against the registry, build."""

from typing import TYPE_CHECKING, Any

__all__ = ["load_recipe", "load_recipe_data"]

if TYPE_CHECKING:  # pragma: no cover
    from cavkit.recipe.load import load_recipe, load_recipe_data


def __getattr__(name: str) -> Any:
    # Resolved on first use: registering ``cavkit recipe`` (cavkit.recipe.commands, a submodule)
    # imports this package at every start-up, and ``cavkit --help`` should not import YAML.
    if name in __all__:
        from cavkit.recipe import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

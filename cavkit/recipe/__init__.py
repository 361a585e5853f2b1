"""YAML recipes: load (with ``base:`` and ``--set``), validate against the registry, build."""

from cavkit.recipe.load import load_recipe, load_recipe_data

__all__ = ["load_recipe", "load_recipe_data"]

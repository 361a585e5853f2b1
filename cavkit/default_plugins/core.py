"""Built-in core commands: registers ``cavkit plugins``, ``cavkit components`` (:mod:`cavkit.core_commands`)
and ``cavkit recipe check|show`` (:mod:`cavkit.recipe.commands`)."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_commands(cli):
    """Add ``cavkit plugins``, ``cavkit components`` and ``cavkit recipe``."""
    from cavkit.core_commands import components_command, plugins_command
    from cavkit.recipe.commands import recipe_group

    cli.add_command(plugins_command)
    cli.add_command(components_command)
    cli.add_command(recipe_group)

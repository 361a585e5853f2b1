"""Built-in checkpoint command: registers ``cavkit convert`` (:mod:`cavkit.checkpoints.commands`)."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_commands(cli):
    """Add ``cavkit convert``."""
    from cavkit.checkpoints.commands import convert_command

    cli.add_command(convert_command)

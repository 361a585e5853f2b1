"""Built-in training command: registers ``cavkit train`` (:mod:`cavkit.engine.commands`)."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_commands(cli):
    """Add ``cavkit train``."""
    from cavkit.engine.commands import train_command

    cli.add_command(train_command)

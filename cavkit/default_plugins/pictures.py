"""Built-in picture commands: registers ``cavkit inpaint``, ``localize``, ``embed`` and ``report``
(:mod:`cavkit.pictures.commands`)."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_commands(cli):
    """Add the picture and export commands."""
    from cavkit.pictures.commands import embed_command, inpaint_command, localize_command, report_command

    for command in (inpaint_command, localize_command, embed_command, report_command):
        cli.add_command(command)

"""The checkpoint command: ``cavkit convert SRC DST`` (official ``.pth`` <-> cavkit format). Imports no torch."""

from __future__ import annotations

import click

from cavkit.cli_options import set_option


@click.command("convert")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--to",
    "target",
    type=click.Choice(["auto", "cavkit", "upstream"]),
    default="auto",
    show_default=True,
    help="output format; auto: an official checkpoint becomes cavkit format, a cavkit one the upstream layout",
)
@set_option(help="override an inferred model setting, e.g. encoder.num_heads=2 (repeatable)")
def convert_command(src: str, dst: str, target: str, overrides: tuple[str, ...]) -> None:
    """Convert a checkpoint: official .pth -> cavkit (safetensors + recipe), or cavkit -> upstream .pth."""
    from cavkit.checkpoints.convert import convert
    from cavkit.plugins import get_plugin_host

    written = convert(src, dst, target=target, overrides=overrides, host=get_plugin_host())
    for path in written:
        click.echo(f"wrote {path}")

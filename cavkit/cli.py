"""The ``cavkit`` command line: a click group whose subcommands come from plugins.

Built-in commands register through the same ``cavkit_register_commands`` hook as third-party ones.
Every :class:`~cavkit.errors.CavkitError` becomes one message on stderr and a non-zero exit
(2 for bad input); ``--debug`` (or ``CAVKIT_DEBUG=1``) shows the traceback instead.
This module must not import torch: ``cavkit --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from cavkit import __version__
from cavkit.errors import CavkitError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cavkit")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--strict-plugins", is_flag=True, help="Fail if any plugin fails to load.")
def cli(debug: bool, strict_plugins: bool) -> None:
    """cavkit: pretrain, fine-tune and evaluate contrastive audio-visual masked autoencoders
    (CAV-MAE, CAV-MAE Sync) from YAML recipes and plugins."""


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("CAVKIT_DEBUG", "") not in ("", "0")


def _strict_requested(argv: list[str]) -> bool:
    return "--strict-plugins" in argv


def build_cli(argv: list[str] | None = None) -> click.Group:
    """Load plugins and let each add its commands to :data:`cli`."""
    from cavkit.plugins import get_plugin_host

    argv = sys.argv[1:] if argv is None else argv
    host = get_plugin_host(strict=True if _strict_requested(argv) else None)
    for impl in host.pm.hook.cavkit_register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # a broken third-party command must not break the CLI
            print(f"cavkit: warning: plugin {impl.plugin_name!r} failed to add commands: {exc}", file=sys.stderr)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cavkit`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_requested(argv)
    try:
        group = build_cli(argv)
        group.main(args=argv, prog_name="cavkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CavkitError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)

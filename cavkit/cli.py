"""The ``cavkit`` command line: a click group whose subcommands come from plugins.

Built-in commands register through the same ``cavkit_register_commands`` hook as third-party ones.
Every :class:`~cavkit.errors.CavkitError` becomes one message on stderr and a non-zero exit
(2 for bad input), and so does a disk that is full or read-only (:mod:`cavkit.io_errors`); ``--debug`` (or ``CAVKIT_DEBUG=1``) prints the traceback before that message and
keeps the same exit code.
This module must not import torch: ``cavkit --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING

import click

from cavkit import __version__
from cavkit.errors import CavkitError
from cavkit.io_errors import disk_errors_as_messages

if TYPE_CHECKING:  # pragma: no cover
    from cavkit.plugins import PluginHost


def make_cli() -> click.Group:
    """A fresh top-level group with no subcommands (plugins add them)."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="cavkit")
    @click.option("--debug", is_flag=True, help="Show tracebacks for errors (or set CAVKIT_DEBUG=1).")
    @click.option("--strict-plugins", is_flag=True, help="Fail if any plugin fails to load (or set CAVKIT_STRICT_PLUGINS=1).")
    def cli(debug: bool, strict_plugins: bool) -> None:
        """cavkit: pretrain, fine-tune and evaluate contrastive audio-visual masked autoencoders
        (CAV-MAE, CAV-MAE Sync) from YAML recipes and plugins."""

    return cli


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("CAVKIT_DEBUG", "") not in ("", "0")


def _strict_requested(argv: list[str]) -> bool:
    return "--strict-plugins" in argv


def build_cli(argv: list[str] | None = None, *, host: "PluginHost | None" = None) -> click.Group:
    """Load plugins (unless ``host`` is given) and let each add its commands to a fresh group."""
    from cavkit.plugins import add_plugin_commands, build_plugin_host, set_plugin_host

    argv = sys.argv[1:] if argv is None else argv
    if host is None:
        host = build_plugin_host(strict=True if _strict_requested(argv) else None)
    set_plugin_host(host)
    group = make_cli()
    add_plugin_commands(host, group)
    return group


def main(argv: list[str] | None = None, *, host: "PluginHost | None" = None) -> None:
    """Entry point of the ``cavkit`` console script.

    :param argv: arguments (default ``sys.argv[1:]``).
    :param host: an already built plugin host (tests); by default plugins are loaded afresh.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_requested(argv)
    try:
        group = build_cli(argv, host=host)
        with disk_errors_as_messages("its output"):  # a full or read-only disk outside cavkit.io's writer
            rc = group.main(args=argv, prog_name="cavkit", standalone_mode=False)
        if isinstance(rc, int) and rc != 0:  # ctx.exit(n) is returned, not raised, here
            sys.exit(rc)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CavkitError as exc:
        if debug:  # the traceback is added; the exit code stays the error's
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)

"""The plugin contract: every hook a cavkit plugin may implement.

cavkit uses pluggy (project name ``cavkit``) for *discovery and registration only*. Hooks run once,
when the plugin manager is built; nothing here runs during training. Runtime behaviour comes only
from the components a recipe names, so installing a plugin never silently changes a run.

Implement a hook by decorating a module-level function with :data:`cavkit.hookimpl` and exposing the
module through an entry point in group ``cavkit``::

    [project.entry-points.cavkit]
    myplugin = "my_package.plugin"

Hooks take one object argument; new capabilities are added as methods on that object, never as new
hook arguments, so these signatures do not break.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from cavkit.registry import PluginRegistrar

hookspec = pluggy.HookspecMarker("cavkit")


@hookspec
def cavkit_register_components(registry: "PluginRegistrar") -> None:
    """Register components of any kind.

    :param registry: a view of the component registry scoped to the calling plugin. Call
        ``registry.add(kind, name, factory, config, summary=...)`` once per component, where
        ``kind`` is one of :data:`cavkit.registry.KINDS`, ``factory`` is a callable or a lazy
        ``"module:attr"`` reference called as ``factory(config, **context)``, and ``config`` is an
        attrs class (or a lazy ``"module:attr"`` reference to one) declaring the component's
        parameters. ``registry.plugin`` is the name components are qualified with
        (``<plugin>/<name>``). A third-party plugin's lazy references are checked here without
        importing them: a misspelt module or attribute fails the plugin's registration.

    Use lazy string references so that ``cavkit --help`` and ``cavkit components`` stay fast and
    never import torch. A name that a built-in already uses is refused; the plugin's registrations
    are then rolled back and the failure is reported by ``cavkit plugins``. See docs/plugins.md.
    """


@hookspec
def cavkit_register_commands(cli: "click.Group") -> None:
    """Add subcommands to the ``cavkit`` command line.

    :param cli: the top-level click group. Add commands with ``@cli.command()`` or
        ``cli.add_command(...)``. Import heavy modules (torch) inside the command body, not at
        module level, so ``cavkit --help`` stays fast. Raise :class:`cavkit.errors.UsageError` for
        bad input: the CLI prints it without a traceback and exits with status 2. A hook that
        raises is reported and skipped (fatal in strict mode).
    """

"""Building the plugin manager: built-ins, then entry points in group ``cavkit``, failures contained.

Order of loading:

1. the built-in plugin modules in :data:`DEFAULT_PLUGINS` (registered like any other plugin);
2. every entry point in group ``cavkit``, unless ``CAVKIT_DISABLE_PLUGIN_AUTOLOAD=1``; names in
   ``CAVKIT_BLOCK_PLUGINS=a,b`` are skipped before import (``CAVKIT_TRACE_PLUGINS=1`` prints what
   each plugin registers);
3. each third-party plugin is checked for hook implementations matching no hookspec (a misspelt
   hook name is a load failure, not a silent no-op), then ``check_pending()`` guards the built-ins;
4. each plugin's ``cavkit_register_components`` is called with a registrar scoped to that plugin.

A plugin that fails to import or to register is rolled back and recorded as a
:class:`PluginFailure`; the rest still work. Strict mode (``CAVKIT_STRICT_PLUGINS=1`` or
``cavkit --strict-plugins``) makes the first failure fatal.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING

import attrs
import pluggy

from cavkit import hookspecs
from cavkit.errors import PluginLoadError
from cavkit.registry import BUILTIN, ComponentRegistry, canonical_plugin

if TYPE_CHECKING:  # pragma: no cover
    import click

#: Built-in plugin modules; each implements ``cavkit_register_components`` and/or ``cavkit_register_commands``.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "cavkit.default_plugins.core",
    "cavkit.default_plugins.models",
    "cavkit.default_plugins.classifiers",
    "cavkit.default_plugins.objectives",
    "cavkit.default_plugins.data",
    "cavkit.default_plugins.evaluation",
    "cavkit.default_plugins.training",
    "cavkit.default_plugins.verify",
    "cavkit.default_plugins.checkpoints",
    "cavkit.default_plugins.pictures",
    "cavkit.default_plugins.weights",
)

ENTRY_POINT_GROUP = "cavkit"


@attrs.frozen
class PluginInfo:
    """One loaded plugin: its pluggy name, distribution and version, and what it registered."""

    name: str
    dist: str
    version: str
    builtin: bool


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded: which one, in which step, and the error."""

    name: str
    dist: str
    version: str
    stage: str  # "import", "register" or "add commands"
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.dist} {self.version}) failed to {self.stage}: {self.error}"


@attrs.define
class PluginHost:
    """The plugin manager plus what it found: the registry, plugin infos and failures."""

    pm: pluggy.PluginManager
    registry: ComponentRegistry
    plugins: list[PluginInfo] = attrs.field(factory=list)
    failures: list[PluginFailure] = attrs.field(factory=list)
    strict: bool = False
    #: ``{plugin name: [command names]}``, filled by :func:`add_plugin_commands`.
    commands: dict[str, list[str]] = attrs.field(factory=dict)

    def failed_names(self) -> list[str]:
        return [f.name for f in self.failures]

    def versions(self) -> dict[str, str]:
        """``{distribution: version}`` of cavkit and every loaded plugin, for run manifests."""
        return {p.dist: p.version for p in self.plugins}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        from cavkit import __version__

        return __version__ if dist == BUILTIN else "unknown"


def _distribution_of(plugin: object) -> tuple[str | None, str]:
    """The installed distribution providing a directly registered plugin module, if any.

    So that a plugin under test (``cavkit.testing.plugin_host(my_plugin)``) gets the same
    qualified ids (``<dist>/<name>``) as when it is loaded through its entry point.
    """
    module = getattr(plugin, "__module__", None) if not isinstance(plugin, ModuleType) else plugin.__name__
    top = (module or "").partition(".")[0]
    if not top:
        return None, "unknown"
    dists = sorted(set(metadata.packages_distributions().get(top, [])))
    if len(dists) != 1:
        return None, "unknown"
    return dists[0], _version(dists[0])


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no hookspec (a misspelt hook name)."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec())


def build_plugin_host(
    *,
    strict: bool | None = None,
    autoload: bool | None = None,
    extra_plugins: tuple[ModuleType | object, ...] = (),
    blocked: tuple[str, ...] | None = None,
) -> PluginHost:
    """Build a fresh plugin manager and registry.

    :param strict: make any plugin failure fatal (default: ``CAVKIT_STRICT_PLUGINS``).
    :param autoload: load entry points (default: unless ``CAVKIT_DISABLE_PLUGIN_AUTOLOAD``).
    :param extra_plugins: plugin objects (modules, or objects with ``@hookimpl`` methods) to register
        directly, e.g. the plugin under test; they are contained like entry-point plugins.
    :param blocked: entry-point names to skip (default: ``CAVKIT_BLOCK_PLUGINS``).
    :raises PluginLoadError: in strict mode, on the first plugin failure.
    """
    strict = _env_flag("CAVKIT_STRICT_PLUGINS") if strict is None else strict
    autoload = not _env_flag("CAVKIT_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
    if blocked is None:
        blocked = tuple(b.strip() for b in os.environ.get("CAVKIT_BLOCK_PLUGINS", "").split(",") if b.strip())
    pm = pluggy.PluginManager("cavkit")
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm, ComponentRegistry(), strict=strict)
    version = _version(BUILTIN)

    def record_failure(failure: PluginFailure, exc: BaseException | None) -> None:
        if strict:
            raise PluginLoadError(f"{failure} (strict plugin mode)") from exc
        host.failures.append(failure)
        print(f"cavkit: warning: {failure}; run `cavkit plugins` for details", file=sys.stderr)

    def register_contained(obj: object, info: PluginInfo) -> None:
        """Register one third-party plugin; on any problem unregister it and record a failure."""
        try:
            pm.register(obj, name=info.name)
        except Exception as exc:  # e.g. a hook implementation whose arguments match no hookspec
            if pm.has_plugin(info.name):
                pm.unregister(name=info.name)
            record_failure(PluginFailure(info.name, info.dist, info.version, "register", _describe(exc)), exc)
            return
        unknown = _unknown_hooks(pm, obj)
        if unknown:
            pm.unregister(name=info.name)
            valid = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("cavkit_")))
            problem = f"unknown hook(s) {', '.join(unknown)}; cavkit's hooks are {valid}"
            record_failure(PluginFailure(info.name, info.dist, info.version, "register", problem), None)
            return
        host.plugins.append(info)

    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        host.plugins.append(PluginInfo(module_name, BUILTIN, version, True))

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        dist, dist_version = _distribution_of(plugin)
        register_contained(plugin, PluginInfo(name, dist or name, dist_version, False))

    if autoload:
        seen: dict[str, str] = {}
        for ep in sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda e: (e.name, e.dist.name if e.dist is not None else ""),
        ):
            dist = ep.dist.name if ep.dist is not None else ep.name
            dist_version = ep.dist.version if ep.dist is not None else "unknown"
            if ep.name in blocked:
                continue
            if ep.name in seen:
                if canonical_plugin(seen[ep.name]) != canonical_plugin(dist):
                    record_failure(
                        PluginFailure(ep.name, dist, dist_version, "import",
                                      f"entry point name {ep.name!r} is already used by {seen[ep.name]!r}"),
                        None,
                    )
                continue  # the same distribution seen twice on sys.path
            seen[ep.name] = dist
            info = PluginInfo(ep.name, dist, dist_version, False)
            try:
                obj = ep.load()
            except Exception as exc:
                record_failure(PluginFailure(ep.name, dist, dist_version, "import", _describe(exc)), exc)
                continue
            register_contained(obj, info)

    pm.check_pending()  # only built-ins can still have unknown hooks here: a cavkit bug

    infos = {p.name: p for p in host.plugins}
    for impl in pm.hook.cavkit_register_components.get_hookimpls():
        info = infos[impl.plugin_name]
        scope = BUILTIN if info.builtin else info.dist
        try:
            impl.function(registry=host.registry.scoped(scope, source=info.name))
            if _env_flag("CAVKIT_TRACE_PLUGINS"):
                added = [f"{s.kind} {s.qualified_id}" for s in host.registry.specs() if s.source == info.name]
                print(f"cavkit: trace: {info.name} ({info.dist} {info.version}) cavkit_register_components "
                      f"-> {', '.join(added) or 'nothing'}", file=sys.stderr)
        except Exception as exc:
            # A broken built-in module is contained like a third-party plugin (the rest of cavkit
            # keeps working and `cavkit plugins` shows it); strict mode makes it fatal.
            if info.builtin:
                host.registry.remove(source=info.name)
            else:
                host.registry.remove(plugin=scope)
            host.plugins.remove(info)
            pm.unregister(name=impl.plugin_name)
            record_failure(PluginFailure(info.name, info.dist, info.version, "register", _describe(exc)), exc)
    return host


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_HOST: PluginHost | None = None


def get_plugin_host(*, strict: bool | None = None) -> PluginHost:
    """The process-wide plugin host, built on first use (never at import time).

    Asking for ``strict=True`` when the cached host was built leniently rebuilds it strictly, so
    failures it had tolerated become fatal.
    """
    global _HOST
    if _HOST is None or (strict and not _HOST.strict):
        _HOST = build_plugin_host(strict=strict)
    return _HOST


def set_plugin_host(host: PluginHost | None) -> None:
    """Make ``host`` the process-wide host (``cavkit.testing`` uses this around CLI calls)."""
    global _HOST
    _HOST = host


def add_plugin_commands(host: PluginHost, cli: "click.Group") -> None:
    """Let every plugin add its commands to ``cli``; a failing third-party hook is only reported.

    Records which plugin added which command in ``host.commands`` (shown by ``cavkit plugins``).
    """
    for impl in host.pm.hook.cavkit_register_commands.get_hookimpls():
        before = set(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:
            failure = PluginFailure(impl.plugin_name, impl.plugin_name, "unknown", "add commands", _describe(exc))
            for info in host.plugins:
                if info.name == impl.plugin_name:
                    failure = PluginFailure(info.name, info.dist, info.version, "add commands", _describe(exc))
            if host.strict:
                raise PluginLoadError(f"{failure} (strict plugin mode)") from exc
            host.failures.append(failure)
            print(f"cavkit: warning: {failure}", file=sys.stderr)
            continue
        host.commands[impl.plugin_name] = sorted(set(cli.commands) - before)


def reset_plugin_host() -> None:
    """Forget the cached host (tests, or after installing a plugin in-process)."""
    global _HOST
    _HOST = None

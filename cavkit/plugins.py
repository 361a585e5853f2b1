"""Building the plugin manager: built-ins, then entry points in group ``cavkit``, failures contained.

Order of loading:

1. the built-in plugin modules in :data:`DEFAULT_PLUGINS` (registered like any other plugin);
2. every entry point in group ``cavkit``, unless ``CAVKIT_DISABLE_PLUGIN_AUTOLOAD=1``; names in
   ``CAVKIT_BLOCK_PLUGINS=a,b`` are skipped before import;
3. ``check_pending()``, so a misspelt hook name is an error, not a silent no-op;
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

import attrs
import pluggy

from cavkit import hookspecs
from cavkit.errors import PluginLoadError
from cavkit.registry import BUILTIN, ComponentRegistry

#: Built-in plugin modules; each implements ``cavkit_register_components``.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "cavkit.default_plugins.commands",
    "cavkit.default_plugins.models",
    "cavkit.default_plugins.data",
    "cavkit.default_plugins.evaluation",
    "cavkit.default_plugins.training",
    "cavkit.default_plugins.pictures",
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
    stage: str  # "import" or "register"
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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
    :param extra_plugins: plugin objects (modules) to register directly, e.g. in tests.
    :param blocked: entry-point names to skip (default: ``CAVKIT_BLOCK_PLUGINS``).
    """
    strict = _env_flag("CAVKIT_STRICT_PLUGINS") if strict is None else strict
    autoload = not _env_flag("CAVKIT_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
    if blocked is None:
        blocked = tuple(b for b in os.environ.get("CAVKIT_BLOCK_PLUGINS", "").split(",") if b)
    pm = pluggy.PluginManager("cavkit")
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm, ComponentRegistry())
    version = _version(BUILTIN)

    def record_failure(failure: PluginFailure, exc: BaseException) -> None:
        if strict:
            raise PluginLoadError(f"{failure} (strict plugin mode)") from exc
        host.failures.append(failure)
        print(f"cavkit: warning: {failure}; run `cavkit plugins` for details", file=sys.stderr)

    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        host.plugins.append(PluginInfo(module_name, BUILTIN, version, True))

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or repr(plugin)
        pm.register(plugin, name=name)
        host.plugins.append(PluginInfo(name, name, "unknown", False))

    if autoload:
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else ep.name
            dist_version = ep.dist.version if ep.dist is not None else "unknown"
            if ep.name in blocked or ep.name in seen:
                continue
            seen.add(ep.name)
            try:
                obj = ep.load()
                pm.register(obj, name=ep.name)
            except Exception as exc:
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                record_failure(PluginFailure(ep.name, dist, dist_version, "import", f"{type(exc).__name__}: {exc}"), exc)
                continue
            host.plugins.append(PluginInfo(ep.name, dist, dist_version, False))

    pm.check_pending()

    infos = {p.name: p for p in host.plugins}
    for impl in pm.hook.cavkit_register_components.get_hookimpls():
        info = infos[impl.plugin_name]
        scope = BUILTIN if info.builtin else info.dist
        try:
            impl.function(registry=host.registry.scoped(scope))
        except Exception as exc:
            host.registry.remove_plugin(scope)
            host.plugins.remove(info)
            pm.unregister(name=impl.plugin_name)
            failure = PluginFailure(info.name, info.dist, info.version, "register", f"{type(exc).__name__}: {exc}")
            if info.builtin:
                raise
            record_failure(failure, exc)
    return host


_HOST: PluginHost | None = None


def get_plugin_host(*, strict: bool | None = None) -> PluginHost:
    """The process-wide plugin host, built on first use (never at import time)."""
    global _HOST
    if _HOST is None:
        _HOST = build_plugin_host(strict=strict)
    return _HOST


def reset_plugin_host() -> None:
    """Forget the cached host (tests, or after installing a plugin in-process)."""
    global _HOST
    _HOST = None

"""The component registry: ``(kind, name) -> ComponentSpec``.

Plugins (built-in ones included) fill it through the ``cavkit_register_components`` hook with a
:class:`PluginRegistrar`, a view that stamps every registration with the plugin's name. Factories
and config classes may be lazy ``"module:attr"`` strings, resolved on first use, so listing
components never imports torch. A third-party plugin's references are checked when it registers,
without importing them (:func:`check_lazy_ref`): a misspelt module or attribute makes the plugin
fail to load, reported by ``cavkit plugins``, instead of surfacing as a traceback in ``train``.

Name rules:

* every component has a qualified id ``<plugin>/<name>`` (``cavkit/infonce``);
* a bare ``name`` resolves when exactly one plugin registered it;
* built-in names are reserved: a plugin reusing one is refused with an error naming both origins;
* two third-party plugins registering one name are both kept, and using the bare name is an
  :class:`~cavkit.errors.AmbiguousComponentError` that lists both qualified ids;
* registering one name twice inside one plugin raises immediately.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from typing import Any

import attrs

from cavkit.errors import AmbiguousComponentError, RegistrationError, UnknownComponentError

#: The closed set of component kinds. Plugins add components to kinds; they do not invent kinds.
KINDS: tuple[str, ...] = (
    "tokenizer",
    "encoder",
    "decoder",
    "masker",
    "objective",
    "retrieval_strategy",
    "model",
    "dataset",
    "aggregator",  # clip classifiers' frame aggregation, [B,K,W] -> [B,W] (cavkit.models.aggregators)
    "weights",  # published checkpoints (cavkit.weights.WeightsEntry), fetched by `weights:NAME`
)

#: The plugin name that built-in components are registered under.
BUILTIN = "cavkit"


def canonical_plugin(name: str) -> str:
    """Normalise a distribution name the way packaging does (``Cavkit_Example`` -> ``cavkit-example``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def with_article(kind: str) -> str:
    """``'an objective'``, ``'a model'``: for messages."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def resolve_ref(ref: Any) -> Any:
    """Import a lazy ``"package.module:Attr.attr"`` reference; return other objects unchanged."""
    if not isinstance(ref, str):
        return ref
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not attr_path:
        raise RegistrationError(f"lazy reference {ref!r} must look like 'package.module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def _top_level_names(path: str) -> set[str] | None:
    """Names a module's source defines or imports at top level; ``None`` if a module ``__getattr__``
    (or unreadable source) means they cannot be known without importing it."""
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.If | ast.Try):
            return None  # conditional definitions: do not guess
    return None if "__getattr__" in names else names


def check_lazy_ref(ref: str) -> str | None:
    """Why lazy reference ``"package.module:attr"`` cannot resolve, or ``None`` if it looks fine.

    Checked without importing the module itself (its parent packages are imported to locate it),
    so a registration stays cheap and torch-free: the module must exist and its source must define
    or import ``attr`` at top level.
    """
    module_name, _, attr_path = ref.partition(":")
    first = attr_path.partition(".")[0]
    if module_name in sys.modules:
        return None if hasattr(sys.modules[module_name], first) else f"module {module_name!r} has no attribute {first!r}"
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        return f"module {module_name!r} cannot be found ({type(exc).__name__}: {exc})"
    if spec is None:
        return f"no module named {module_name!r}"
    if not spec.origin or not spec.origin.endswith(".py"):
        return None
    names = _top_level_names(spec.origin)
    if names is None or first in names:
        return None
    close = difflib.get_close_matches(first, sorted(n for n in names if not n.startswith("_")), n=1, cutoff=0.6)
    hint = f"; did you mean {module_name}:{close[0]}?" if close else ""
    return f"module {module_name!r} defines no {first!r}{hint}"


@attrs.frozen
class ComponentSpec:
    """One registered component.

    :ivar kind: one of :data:`KINDS`.
    :ivar name: the name recipes use in ``type:``.
    :ivar plugin: the registering plugin (``cavkit`` for built-ins, else the distribution name).
    :ivar factory: callable ``factory(config, **context) -> component``, or a lazy reference.
    :ivar config: the attrs class declaring the parameters, or a lazy reference.
    :ivar summary: one line describing the component.
    :ivar source: the pluggy plugin (module or entry point) whose hook registered it.
    """

    kind: str
    name: str
    plugin: str
    factory: Callable[..., Any] | str
    config: type | str
    summary: str = ""
    source: str = ""

    @property
    def qualified_id(self) -> str:
        return f"{self.plugin}/{self.name}"

    def config_class(self) -> type:
        cls = resolve_ref(self.config)
        if not attrs.has(cls):
            raise RegistrationError(
                f"{self.kind} {self.qualified_id!r}: config {self.config!r} is not an attrs class"
            )
        return cls

    def factory_callable(self) -> Callable[..., Any]:
        """The factory, imported if it is a lazy reference.

        :raises RegistrationError: naming the component and its plugin when the reference does not
            resolve (a broken plugin is a clean error, not a traceback).
        """
        try:
            return resolve_ref(self.factory)
        except (ImportError, AttributeError) as exc:
            raise RegistrationError(
                f"{self.kind} {self.qualified_id!r}: its factory {self.factory!r} cannot be imported "
                f"({type(exc).__name__}: {exc}); the plugin {self.plugin!r} is broken or incompletely installed"
            ) from exc

    def build(self, config: Any, **context: Any) -> Any:
        """Call the factory with a validated config instance (and optional runtime context)."""
        return self.factory_callable()(config, **context)


class ComponentRegistry:
    """All registered components, keyed by kind and name."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], list[ComponentSpec]] = {}

    # -- registration ---------------------------------------------------------------------------
    def scoped(self, plugin: str, source: str = "") -> "PluginRegistrar":
        """A registrar that stamps every registration with ``plugin`` (and the hook's ``source``)."""
        return PluginRegistrar(self, plugin, source or plugin)

    def _add(self, spec: ComponentSpec) -> None:
        if spec.kind not in KINDS:
            raise RegistrationError(
                f"plugin {spec.plugin!r} registered {spec.name!r} under unknown kind {spec.kind!r}; "
                f"kinds are: {', '.join(KINDS)}"
            )
        if not isinstance(spec.name, str) or not spec.name or "/" in spec.name:
            raise RegistrationError(
                f"plugin {spec.plugin!r}: component name {spec.name!r} must be a non-empty string without '/'"
            )
        for what, ref in (("factory", spec.factory), ("config", spec.config)):
            if isinstance(ref, str) and ":" not in ref:
                raise RegistrationError(
                    f"plugin {spec.plugin!r}: {spec.kind} {spec.name!r} {what} {ref!r} must be a "
                    f"lazy reference 'package.module:attr'"
                )
        if not isinstance(spec.factory, str) and not callable(spec.factory):
            raise RegistrationError(f"plugin {spec.plugin!r}: {spec.kind} {spec.name!r} factory is not callable")
        if not isinstance(spec.config, str) and not attrs.has(spec.config):
            raise RegistrationError(
                f"plugin {spec.plugin!r}: {spec.kind} {spec.name!r} config must be an attrs class or a "
                f"'package.module:Class' reference, got {spec.config!r}"
            )
        existing = self._specs.setdefault((spec.kind, spec.name), [])
        for other in existing:
            if other.plugin == spec.plugin:
                raise RegistrationError(
                    f"plugin {spec.plugin!r} registered {spec.kind} {spec.name!r} twice"
                )
            if BUILTIN in (other.plugin, spec.plugin):
                raise RegistrationError(
                    f"plugin {spec.plugin!r} tried to register {spec.kind} {spec.name!r}, which "
                    f"{other.plugin!r} already provides; built-in names are reserved, pick another name"
                )
        existing.append(spec)

    def remove(self, *, plugin: str | None = None, source: str | None = None) -> None:
        """Roll back every registration of ``plugin``, or made by hook implementation ``source``
        (one built-in module), when that hook fails part-way."""
        for key in list(self._specs):
            kept = [s for s in self._specs[key] if not (s.plugin == plugin or s.source == source)]
            if kept:
                self._specs[key] = kept
            else:
                del self._specs[key]

    # -- lookup ---------------------------------------------------------------------------------
    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """Every spec (of one kind), sorted by kind then name."""
        out = [s for (k, _), group in self._specs.items() if kind in (None, k) for s in group]
        return sorted(out, key=lambda s: (KINDS.index(s.kind), s.name, s.plugin))

    def names(self, kind: str) -> list[str]:
        return sorted({name for (k, name) in self._specs if k == kind})

    def get(self, kind: str, name: str, *, failed_plugins: list[str] | None = None) -> ComponentSpec:
        """Look up a component by bare name or qualified id ``plugin/name``.

        :raises UnknownComponentError: with close matches and the command that lists all names.
        :raises AmbiguousComponentError: when two plugins registered the bare name.
        """
        plugin, _, bare = name.rpartition("/")
        candidates = self._specs.get((kind, bare), [])
        if plugin:
            candidates = [s for s in candidates if canonical_plugin(s.plugin) == canonical_plugin(plugin)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            ids = ", ".join(s.qualified_id for s in candidates)
            raise AmbiguousComponentError(
                f"{kind} {name!r} is registered by several plugins ({ids}); use a qualified id"
            )
        for other_kind in KINDS:
            if other_kind != kind and self._specs.get((other_kind, bare)):
                raise UnknownComponentError(
                    f"{name!r} is {with_article(other_kind)}, but {with_article(kind)} is expected here"
                )
        message = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(bare, self.names(kind), n=3, cutoff=0.6)
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        message += f" (see `cavkit components {kind}`)"
        if failed_plugins:
            message += f"; plugins that failed to load: {', '.join(failed_plugins)}"
        raise UnknownComponentError(message)


@attrs.define
class PluginRegistrar:
    """The object a plugin's ``cavkit_register_components`` hook receives.

    It forwards to the registry, recording which plugin registered what.
    """

    registry: ComponentRegistry
    plugin: str
    source: str = ""

    def add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any] | str,
        config: type | str,
        *,
        summary: str = "",
    ) -> None:
        """Register one component.

        :param kind: one of :data:`KINDS`.
        :param name: the name recipes use in ``type:``.
        :param factory: ``factory(config, **context)`` building the component, or ``"module:attr"``.
        :param config: attrs class of parameters (defaults, validators, ``help`` metadata), or a
            ``"module:attr"`` reference to one. Keep config modules free of torch imports.
        :param summary: one line for ``cavkit components``.
        :raises RegistrationError: for an invalid registration, including (third-party plugins) a
            lazy reference whose module or attribute does not exist.
        """
        if self.plugin != BUILTIN:  # built-ins are covered by cavkit's conformance tests
            for what, ref in (("factory", factory), ("config", config)):
                problem = check_lazy_ref(ref) if isinstance(ref, str) and ":" in ref else None
                if problem:
                    raise RegistrationError(f"{kind} {name!r}: {what} {ref!r} does not resolve: {problem}")
        self.registry._add(ComponentSpec(kind, name, self.plugin, factory, config, summary, self.source or self.plugin))

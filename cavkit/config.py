"""Declaring component parameters with attrs, and turning YAML mappings into validated configs.

A component's parameters are a frozen, keyword-only attrs class. Declare each parameter with
:func:`param` (a default, a help line and optional validators) and each nested component with
:func:`component` or :func:`component_list`::

    @attrs.frozen(kw_only=True)
    class EncoderConfig:
        depth: int = param(11, help="modality-specific blocks", validator=at_least(1))
        masker: ComponentNode | None = component("masker", default=None)

:func:`structure` checks a mapping against such a class and records every problem with its key
path, instead of stopping at the first. Nested component slots become :class:`ComponentNode`
objects; the owner builds them with ``node.build()`` when it needs them.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from typing import Any, Literal, Union

import attrs

from cavkit.errors import CavkitError, Problem
from cavkit.validators import at_least, describe_validator, finite, in_range, one_of  # part of this module's API

__all__ = [
    "ComponentNode", "at_least", "component", "component_list", "describe_params", "describe_validator", "finite",
    "in_range", "one_of", "param", "structure", "structure_node", "unstructure",
]

if typing.TYPE_CHECKING:  # pragma: no cover
    from cavkit.registry import ComponentRegistry, ComponentSpec

#: Keys every component node may carry besides its parameters.
NODE_KEYS = ("type", "name")


def param(default: Any = attrs.NOTHING, *, help: str = "", validator: Any = None, factory: Any = None) -> Any:
    """A documented parameter. ``help`` shows in ``cavkit components show``."""
    if factory is not None:
        return attrs.field(factory=factory, validator=validator, metadata={"help": help})
    return attrs.field(default=default, validator=validator, metadata={"help": help})


def component(kind: str, *, default: Any = attrs.NOTHING, default_type: str | None = None, help: str = "") -> Any:
    """A slot holding one nested component of ``kind`` (a :class:`ComponentNode`).

    With ``default_type``, a recipe may leave the slot out (the named component is built with its
    defaults) or give a node without ``type:`` (``encoder: {depth: 4}`` overrides one parameter of
    the default component). Validation (:func:`structure`) fills the default node in, also for an
    explicit ``null``, so a validated config never holds ``None`` in such a slot; the attrs default
    is ``None`` only for configs built by hand, which :func:`cavkit.models.slots.build_slot` refuses.
    """
    if default_type is not None and default is attrs.NOTHING:
        default = None
    return attrs.field(default=default, metadata={"help": help, "component": kind, "default_type": default_type})


def component_list(kind: str, *, weighted: bool = False, help: str = "") -> Any:
    """A slot holding a list of components of ``kind``; ``weighted`` nodes also take ``weight:``."""
    return attrs.field(
        factory=list, metadata={"help": help, "component": kind, "many": True, "weighted": weighted}
    )


@attrs.frozen
class ComponentNode:
    """A validated recipe node: which component, its config, and an optional label/weight."""

    spec: "ComponentSpec"
    config: Any
    label: str | None = None
    weight: float = 1.0

    @property
    def type(self) -> str:
        return self.spec.name

    def build(self, **context: Any) -> Any:
        """Build the component; ``context`` passes runtime values (e.g. a split) to the factory."""
        return self.spec.build(self.config, **context)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of attrs class ``cls``.

    Config modules often use ``from __future__ import annotations``; names they import only under
    ``TYPE_CHECKING`` (``ComponentNode``) are resolved from this module. An annotation that still
    cannot be resolved is a bug in the config class, reported as a :class:`RegistrationError`.
    """
    from cavkit.errors import RegistrationError

    extra = {"ComponentNode": ComponentNode, "Any": Any, "Literal": Literal}
    try:
        return typing.get_type_hints(cls, localns=extra)
    except Exception as exc:
        raise RegistrationError(
            f"config class {cls.__module__}.{cls.__qualname__} has an annotation that cannot be "
            f"resolved ({type(exc).__name__}: {exc}); import the names it uses at module level"
        ) from None


def type_name(tp: Any) -> str:
    """A readable type for messages and ``cavkit components show``: ``'a' | 'b'``, ``int | None``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else type_name(a) for a in args)
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _Structurer:
    """Walks a mapping against an attrs class, collecting :class:`Problem` objects."""

    def __init__(self, registry: "ComponentRegistry | None", failed_plugins: list[str]):
        self.registry = registry
        self.failed_plugins = failed_plugins
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # -- attrs classes --------------------------------------------------------------------------
    def attrs_instance(self, cls: type, data: Any, path: str, skip: tuple[str, ...] = ()) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(path, f"expected a mapping, got {_describe(data)}")
            return None
        fields = {f.name: f for f in attrs.fields(cls)}
        try:
            hints = field_types(cls)
        except CavkitError as exc:
            self.fail(path, str(exc))
            return None
        ok = True
        for key in data:
            if key in skip:
                continue
            if not isinstance(key, str) or key not in fields:
                ok = False
                message = f"unknown key {key!r}"
                close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                nested = _nested_key(cls, str(key))
                if close:
                    message += f"; did you mean {close[0]!r}?"
                elif nested:
                    message += f"; did you mean {_join(path, nested)!r}?"
                else:
                    message += f" (valid keys: {', '.join(fields)})"
                self.fail(_join(path, str(key)), message)
        kwargs: dict[str, Any] = {}
        for name, field in fields.items():
            sub = _join(path, name)
            if name not in data:
                default_type = field.metadata.get("default_type")
                if default_type is not None:
                    node = self.node(field.metadata["component"], {"type": default_type}, sub)
                    ok = ok and node is not None
                    kwargs[name] = node
                    continue
                if field.default is attrs.NOTHING:
                    ok = False
                    self.fail(sub, "required key is missing")
                continue
            value = data[name]
            kind = field.metadata.get("component")
            before = len(self.problems)
            if kind and field.metadata.get("many"):
                kwargs[name] = self.node_list(kind, value, sub, field.metadata.get("weighted", False))
            elif kind:
                default_type = field.metadata.get("default_type")
                if value is None and default_type is not None:  # null: the default part, resolved here
                    value = {"type": default_type}
                if isinstance(value, dict) and "type" not in value and default_type is not None:
                    value = {"type": default_type, **value}
                kwargs[name] = None if value is None else self.node(kind, value, sub)
            else:
                kwargs[name] = self.value(hints.get(name, Any), value, sub)
                if field.validator is not None and len(self.problems) == before:
                    try:
                        field.validator(None, field, kwargs[name])
                    except (ValueError, TypeError) as exc:
                        self.fail(sub, str(exc.args[0]) if exc.args else str(exc))
            ok = ok and len(self.problems) == before
        if not ok:
            return None
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:
            # attrs validators raise with the attribute in args; name the key path.
            attr = next((a for a in exc.args if isinstance(a, attrs.Attribute)), None)
            where = _join(path, attr.name) if attr is not None else path
            self.fail(where, str(exc.args[0]) if exc.args else str(exc))
            return None

    # -- component nodes ------------------------------------------------------------------------
    def node(self, kind: str, data: Any, path: str, weighted: bool = False) -> ComponentNode | None:
        if isinstance(data, str):
            data = {"type": data}
        if not isinstance(data, dict):
            self.fail(path, f"expected a {kind} node (a mapping with 'type:'), got {_describe(data)}")
            return None
        if "type" not in data:
            self.fail(_join(path, "type"), f"missing 'type:' naming a {kind}")
            return None
        name = data["type"]
        if not isinstance(name, str):
            self.fail(_join(path, "type"), f"expected a component name, got {_describe(name)}")
            return None
        assert self.registry is not None, "component slots need a registry"
        try:
            spec = self.registry.get(kind, name, failed_plugins=self.failed_plugins)
        except CavkitError as exc:
            self.fail(_join(path, "type"), str(exc))
            return None
        label = data.get("name")
        if label is not None and not isinstance(label, str):
            self.fail(_join(path, "name"), f"expected a label (a string), got {_describe(label)}")
            return None
        weight = 1.0
        skip = NODE_KEYS + (("weight",) if weighted else ())
        if weighted and "weight" in data:
            weight = self.value(float, data["weight"], _join(path, "weight"))
            if isinstance(weight, float) and not 0 <= weight < math.inf:
                self.fail(_join(path, "weight"), f"must be a finite number >= 0, got {weight}")
        try:
            cls = spec.config_class()
        except Exception as exc:  # a broken plugin's config: report, do not crash
            self.fail(path, f"{kind} {spec.qualified_id!r} has an unusable config: {exc}")
            return None
        clash = sorted(set(skip) & set(attrs.fields_dict(cls)))
        if clash:  # a plugin bug: these keys belong to the node, not to the component
            self.fail(path, f"{kind} {spec.qualified_id!r} declares parameter(s) {', '.join(map(repr, clash))}, "
                            f"which recipe nodes reserve ({', '.join(skip)}); the plugin must rename them")
            return None
        config = self.attrs_instance(cls, {k: v for k, v in data.items()}, path, skip=skip)
        if config is None:
            return None
        return ComponentNode(spec, config, label if isinstance(label, str) else None, weight)

    def node_list(self, kind: str, data: Any, path: str, weighted: bool) -> list[ComponentNode]:
        if data is None:
            return []
        if not isinstance(data, list):
            self.fail(path, f"expected a list of {kind} nodes, got {_describe(data)}")
            return []
        nodes = [self.node(kind, item, _join(path, str(i)), weighted) for i, item in enumerate(data)]
        return [n for n in nodes if n is not None]

    # -- plain values ---------------------------------------------------------------------------
    def value(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], value, path)
            for option in options:
                trial = _Structurer(self.registry, self.failed_plugins)
                result = trial.value(option, value, path)
                if not trial.problems:
                    return result
            self.fail(path, f"expected {type_name(tp)}, got {_describe(value)}")
            return None
        if origin is Literal:
            if value not in args:
                self.fail(path, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
            return value
        if origin in (list, tuple):
            if not isinstance(value, list | tuple):
                self.fail(path, f"expected a list, got {_describe(value)}")
                return None
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    self.fail(path, f"expected {len(args)} items, got {len(value)}")
                    return None
                return tuple(self.value(a, v, _join(path, str(i))) for i, (a, v) in enumerate(zip(args, value)))
            item_tp = args[0] if args else Any
            items = [self.value(item_tp, v, _join(path, str(i))) for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(path, f"expected a mapping, got {_describe(value)}")
                return None
            val_tp = args[1] if len(args) == 2 else Any
            return {k: self.value(val_tp, v, _join(path, str(k))) for k, v in value.items()}
        if isinstance(tp, type) and attrs.has(tp):
            return self.attrs_instance(tp, value, path)
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(path, f"expected a number, got {_describe(value)}")
                return None
            return float(value)
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(path, f"expected an integer, got {_describe(value)}")
                return None
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(path, f"expected true or false, got {_describe(value)}")
                return None
            return value
        if tp is str:
            if not isinstance(value, str):
                self.fail(path, f"expected a string, got {_describe(value)}")
                return None
            return value
        if isinstance(tp, type) and not isinstance(value, tp):
            self.fail(path, f"expected {type_name(tp)}, got {_describe(value)}")
            return None
        return value


def _nested_key(cls: type, key: str, depth: int = 2) -> str | None:
    """Where ``key`` lives in the attrs sections nested under ``cls`` (``optimizer.lr`` for ``lr``)."""
    if depth == 0:
        return None
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        return None
    for field in attrs.fields(cls):
        tp = hints.get(field.name)
        if isinstance(tp, type) and attrs.has(tp) and not field.metadata.get("component"):
            if key in attrs.fields_dict(tp):
                return f"{field.name}.{key}"
            deeper = _nested_key(tp, key, depth - 1)
            if deeper:
                return f"{field.name}.{deeper}"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"


def structure(
    cls: type,
    data: Any,
    *,
    registry: "ComponentRegistry | None" = None,
    path: str = "",
    failed_plugins: list[str] | None = None,
) -> tuple[Any, list[Problem]]:
    """Validate ``data`` against attrs class ``cls``; return ``(instance or None, problems)``."""
    walker = _Structurer(registry, failed_plugins or [])
    instance = walker.attrs_instance(cls, data, path)
    return instance, walker.problems


def structure_node(
    kind: str,
    data: Any,
    *,
    registry: "ComponentRegistry",
    path: str = "",
    failed_plugins: list[str] | None = None,
) -> tuple[ComponentNode | None, list[Problem]]:
    """Validate one component node (``{type: name, **params}``) of ``kind``; return ``(node, problems)``."""
    walker = _Structurer(registry, failed_plugins or [])
    node = walker.node(kind, data, path)
    return node, walker.problems


from cavkit.config_export import describe_params, unstructure  # noqa: E402  (part of this module's API)

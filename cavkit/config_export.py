"""Configs back to plain data: :func:`unstructure` (YAML for stored recipes and ``recipe show``) and
:func:`describe_params` (the rows of ``cavkit components show``)."""

from __future__ import annotations

from typing import Any

import attrs

from cavkit.validators import describe_validator

__all__ = ["describe_params", "unstructure"]


def unstructure(obj: Any) -> Any:
    """A config (or node) back to plain YAML-able data, defaults filled in."""
    from cavkit.config import ComponentNode  # cavkit.config re-exports this module

    if isinstance(obj, ComponentNode):
        out: dict[str, Any] = {"type": obj.spec.name}
        if obj.spec.plugin != "cavkit":
            out["type"] = obj.spec.qualified_id
        if obj.label is not None:
            out["name"] = obj.label
        if obj.weight != 1.0:
            out["weight"] = obj.weight
        out.update(unstructure(obj.config))
        return out
    if attrs.has(type(obj)):
        return {f.name: unstructure(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
    if isinstance(obj, list | tuple):
        return [unstructure(v) for v in obj]
    if isinstance(obj, dict):
        return {k: unstructure(v) for k, v in obj.items()}
    return obj


def describe_params(cls: type) -> list[dict[str, str]]:
    """Rows (name, type, default, help, constraint) for ``cavkit components show``."""
    from cavkit.config import field_types, type_name

    hints = field_types(cls)
    rows = []
    for field in attrs.fields(cls):
        if field.metadata.get("component"):
            kind = field.metadata["component"]
            tp = f"list[{kind}]" if field.metadata.get("many") else kind
        else:
            tp = type_name(hints.get(field.name, Any))
        if field.metadata.get("default_type"):
            default = f"{{type: {field.metadata['default_type']}}}"
        elif field.default is attrs.NOTHING:
            default = "(required)"
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = repr(field.default.factory())
        else:
            default = repr(field.default)
        rows.append({
            "name": field.name, "type": tp, "default": default, "help": field.metadata.get("help", ""),
            "constraint": describe_validator(field.validator),
        })
    return rows

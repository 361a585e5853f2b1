"""Validators for component parameters (use them in :func:`cavkit.config.param`).

Each raises ``ValueError`` with a message that reads well after the key path
(``model.encoder.depth: must be >= 1, got 0``) and carries ``constraint``, the rule in a few words,
which ``cavkit components show`` prints next to the parameter (:func:`describe_validator`).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["at_least", "describe_validator", "finite", "in_range", "one_of"]


def _described(check: Any, constraint: str) -> Any:
    check.constraint = constraint
    return check


def at_least(low: float):
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is not None and not value >= low:  # written so that NaN fails too
            raise ValueError(f"must be >= {low}, got {value!r}")

    return _described(check, f">= {low}")


def finite():
    """Reject ``.nan`` and ``.inf`` (YAML spells them so; torch would fail much later, or silently)."""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")

    return _described(check, "finite")


def in_range(low: float, high: float):
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is not None and not (low <= value <= high):
            raise ValueError(f"must be between {low} and {high}, got {value!r}")

    return _described(check, f"{low} <= value <= {high}")


def one_of(*choices: Any):
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return _described(check, f"one of {', '.join(map(repr, choices))}")


def describe_validator(validator: Any) -> str:
    """The rule a field's validator enforces, in words (``">= 1"``, ``"0.0 <= value <= 0.999"``).

    Validators given as a list are described one by one, joined by ``and``; a validator without a
    ``constraint`` attribute (a plugin's own) is described by the first line of its docstring, or
    named by its function or class name.
    """
    if validator is None:
        return ""
    parts = getattr(validator, "_validators", None) or getattr(validator, "validators", None)
    if isinstance(parts, tuple | list):
        return " and ".join(filter(None, (describe_validator(v) for v in parts)))
    described = getattr(validator, "constraint", None)
    if described:
        return described
    doc = (getattr(validator, "__doc__", None) or "").strip().splitlines()
    if doc and not isinstance(validator, type) and getattr(validator, "__name__", None):
        return doc[0].rstrip(".")
    name = getattr(validator, "__name__", None) or type(validator).__name__
    return f"checked by {name}"

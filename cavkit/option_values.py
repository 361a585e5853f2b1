"""Reading ``KEY=VALUE`` values of the command line (``--data``, ``--strategy NAME:key=value``).

Values are YAML, read by the recipe loader's bounded parser (:func:`cavkit.recipe.load.parse_yaml`),
so ``8`` is an int, ``true`` a bool and ``[1, 2]`` a list exactly as in a recipe; text that is not
YAML stays text. No click and no torch here: library code may use it.
"""

from __future__ import annotations

from typing import Any

from cavkit.errors import UsageError


def parse_value(text: str, *, option: str = "value") -> Any:
    """``text`` read as YAML, else the text itself.

    :raises UsageError: a value over the recipe limits (size, depth, alias expansion).
    """
    import yaml

    from cavkit.recipe.load import RecipeLimitError, excerpt, parse_yaml

    try:
        return parse_yaml(text)
    except RecipeLimitError as exc:
        raise UsageError(f"{option} {excerpt(text)}: the value is too large or deep ({exc})") from None
    except yaml.YAMLError:
        return text


def key_values(items: tuple[str, ...] | list[str], option: str) -> dict[str, Any]:
    """``("k=v", ...)`` as a dict with YAML-read values.

    :raises UsageError: an item without ``=`` or with an empty key (named with ``option``).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value, option=option)
    return out

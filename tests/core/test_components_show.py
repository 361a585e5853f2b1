"""`cavkit components show` prints each parameter's rule next to its type and default."""

from __future__ import annotations

import attrs

from cavkit import hookimpl
from cavkit.config import at_least, describe_validator, finite, in_range, one_of, param
from cavkit.testing import plugin_host, run_cli


def test_builtin_ranges_are_shown():
    result = run_cli(["components", "show", "masker", "unstructured"], host=plugin_host())
    assert result.exit_code == 0, result.stderr
    assert "  ratio: float = 0.75  [0.0 <= value <= 0.999]" in result.stdout


def _even(inst, attr, value):
    """Must be even."""
    if value % 2:
        raise ValueError(f"must be even, got {value}")


@attrs.frozen(kw_only=True)
class Rules:
    size: int = param(2, help="a size", validator=[at_least(1), _even])
    scale: float = param(1.0, help="a scale", validator=[at_least(0.0), finite()])
    mode: str = param("a", help="a mode", validator=one_of("a", "b"))
    free: int = param(0, help="anything")


class RulesPlugin:
    @hookimpl
    def cavkit_register_components(self, registry):
        registry.add("objective", "rules", lambda config: None, Rules)


def test_plugin_validators_are_described_too():
    result = run_cli(["components", "show", "objective", "rules"], host=plugin_host(RulesPlugin()))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  size: int = 2  [>= 1 and Must be even]" in lines
    assert "  scale: float = 1.0  [>= 0.0 and finite]" in lines
    assert "  mode: str = 'a'  [one of 'a', 'b']" in lines
    assert "  free: int = 0" in lines
    assert describe_validator(in_range(1, 24)) == "1 <= value <= 24"

"""Exceptions that the CLI turns into one clear message and a non-zero exit.

Every error a user can cause (a recipe typo, a missing file, a broken plugin, a checkpoint of the
wrong shape) is a :class:`CavkitError`. The CLI prints ``str(error)`` without a traceback unless
``--debug`` is given, and exits with ``error.exit_code``.
"""

from __future__ import annotations

import attrs


class CavkitError(Exception):
    """Base class of every user-facing cavkit error."""

    exit_code = 1


class UsageError(CavkitError):
    """Bad input from the user: a wrong argument, a missing file, a malformed recipe."""

    exit_code = 2


@attrs.frozen
class Problem:
    """One problem in a recipe, located by its dotted key path (``model.encoder.depth``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RecipeError(UsageError):
    """A recipe that cannot be used; carries every problem found, not only the first.

    The message lists at most :attr:`MAX_LISTED` problems of at most :attr:`MAX_LINE` characters
    each: a recipe is untrusted input, and a hostile or wrong file (``base: /etc/services``) must
    not turn into megabytes of error text. ``problems`` keeps them all.
    """

    MAX_LISTED = 20
    MAX_LINE = 300

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"{_cut(source, self.MAX_LINE)}: {count} problem{'' if count == 1 else 's'} in recipe"]
        lines += [f"  - {_cut(str(p), self.MAX_LINE)}" for p in self.problems[: self.MAX_LISTED]]
        if count > self.MAX_LISTED:
            lines.append(f"  ... and {count - self.MAX_LISTED} more")
        super().__init__("\n".join(lines))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class UnknownComponentError(UsageError):
    """A recipe or command names a component that no loaded plugin registered."""


class AmbiguousComponentError(UsageError):
    """Two third-party plugins registered the same name; the recipe must qualify it."""


class RegistrationError(CavkitError):
    """A plugin tried to register something invalid (a reserved or duplicate name, a bad kind)."""


class PluginLoadError(CavkitError):
    """A plugin failed to import or register (raised only in strict mode)."""


class CheckpointError(UsageError):
    """A checkpoint file that is missing, truncated, of the wrong model or of the wrong shape."""


class DataError(UsageError):
    """Missing, empty or corrupt data: names the clip and the file."""

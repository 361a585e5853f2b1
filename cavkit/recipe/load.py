"""Reading a recipe: YAML (safe loading only) through fsspec, ``base:`` merging, ``--set`` overrides.

A recipe is plain data. ``base: parent.yaml`` (resolved relative to the directory of the recipe
that names it) is deep-merged first: mappings merge key by key, everything else (lists, scalars) is
replaced, and a node that changes its ``type:`` replaces the parent's node whole, so parameters of
another component never leak in. A key written ``name+:`` appends its list to the inherited list
``name`` instead of replacing it (``objectives+: [{type: siglip}]``). ``--set a.b.c=value`` parses
``value`` as YAML and goes through the same validation as the file, so a typo in an override gets
the same did-you-mean message; ``--set objectives+=VALUE`` appends (a list is appended item by
item).

A recipe is untrusted input (shared, downloaded, stored in a checkpoint), so what reading one can
cost is bounded: at most :data:`MAX_RECIPE_BYTES` of text, :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_NODES` values once YAML aliases are expanded (an "alias bomb" of a few lines otherwise
expands to gigabytes), ``base:`` only to regular files. Each limit is a one-line error, never a
``RecursionError`` or an exhausted memory.
"""

from __future__ import annotations

import copy
import os
import posixpath
import re
import stat
from typing import Any

import yaml

from cavkit.errors import Problem, RecipeError, UsageError

MAX_BASE_DEPTH = 8
#: Largest recipe file read (the published recipes are ~2 KB).
MAX_RECIPE_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (a recipe needs about 6).
MAX_DEPTH = 64
#: Most values (mappings, lists and scalars) once aliases are expanded (a recipe has a few hundred).
MAX_NODES = 20_000


class RecipeLimitError(ValueError):
    """YAML that exceeds a limit of this module (size, depth, expanded values, recursive alias)."""


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float.

    YAML 1.1 (PyYAML) only treats exponent notation with a dot (``1.0e-4``) as a float, so a
    learning rate written ``1e-4`` would silently become the string ``"1e-4"``.
    """


class _BoundedLoader(RecipeLoader):
    """``RecipeLoader`` that refuses nesting deeper than :data:`MAX_DEPTH` while composing.

    PyYAML composes nested nodes recursively, so without this bound a few kilobytes of ``[[[[...``
    end in ``RecursionError``.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise RecipeLimitError(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}, column {mark.column + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expanded(node: Any) -> None:
    """Count the values and depth of a composed YAML graph as if every alias were copied out.

    Aliases make the composed graph a DAG (or, for ``&a [*a]``, a cycle); sizes and depths are
    memoised per node, so the check costs one visit per distinct node even when the expansion is
    astronomically large.
    """
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def visit(current: Any) -> tuple[int, int]:
        key = id(current)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RecipeLimitError("a YAML alias refers to a node that contains it (a recursive recipe)")
        active.add(key)
        size, depth = 1, 1
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [item for pair in current.value for item in pair]
        else:
            children = []
        for child in children:
            child_size, child_depth = visit(child)
            size += child_size
            depth = max(depth, child_depth + 1)
            if size > MAX_NODES:
                raise RecipeLimitError(f"more than {MAX_NODES} values once YAML aliases are expanded (an alias bomb?)")
            if depth > MAX_DEPTH:
                raise RecipeLimitError(f"nesting deeper than {MAX_DEPTH} levels once YAML aliases are expanded")
        active.discard(key)
        sizes[key] = (size, depth)
        return size, depth

    visit(node)


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse recipe YAML safely (no tags that build Python objects) within this module's limits.

    :raises RecipeLimitError: text over :data:`MAX_RECIPE_BYTES`, nesting over :data:`MAX_DEPTH`,
        over :data:`MAX_NODES` values after alias expansion, or a recursive alias.
    :raises yaml.YAMLError: invalid YAML.
    """
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeLimitError(f"{len(text)} characters, more than the {MAX_RECIPE_BYTES} a recipe may have")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def excerpt(text: str, limit: int = 80) -> str:
    """``repr`` of ``text`` cut to about ``limit`` characters, for quoting untrusted input in messages."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def read_recipe_text(uri: str, *, regular_file: bool = False) -> str:
    """At most :data:`MAX_RECIPE_BYTES` of UTF-8 text; ``regular_file`` refuses devices, pipes and folders.

    The one reader of recipe files, also of the ``<name>.yaml`` recipe beside a checkpoint
    (:mod:`cavkit.checkpoints.stored`). Parse the text with :func:`parse_yaml` (its limits).

    :raises UsageError: missing, a folder, not a regular file, not UTF-8, unreadable or too large.
    """
    import fsspec

    try:
        if regular_file:
            _require_regular_file(uri)
        with fsspec.open(uri, "rb") as fh:
            data = fh.read(MAX_RECIPE_BYTES + 1)
        if len(data) > MAX_RECIPE_BYTES:
            raise UsageError(f"{uri}: larger than {MAX_RECIPE_BYTES} bytes, too large for a recipe YAML file")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{uri}: recipe file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{uri}: is a directory, expected a recipe YAML file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{uri}: not a text file, expected a recipe YAML file") from None
    except PermissionError:
        raise UsageError(f"{uri}: permission denied reading the recipe") from None
    except (ValueError, ImportError) as exc:  # unknown protocol, missing fsspec backend
        raise UsageError(f"{uri}: cannot open the recipe: {exc}") from None


def _require_regular_file(uri: str) -> None:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        regular = stat.S_ISREG(os.stat(path).st_mode)
    else:
        regular = fs.info(path).get("type") == "file"
    if not regular:
        raise UsageError(f"{uri}: not a regular file; a recipe must be a YAML file")


def _parse(uri: str, text: str) -> dict[str, Any]:
    try:
        data = parse_yaml(text)
    except RecipeLimitError as exc:
        raise RecipeError(uri, [Problem("", f"too large or deep for a recipe: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(uri, [Problem("", f"YAML syntax error{where}: {problem}")]) from None
    if data is None:
        raise RecipeError(uri, [Problem("", "the recipe file is empty")])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise RecipeError(uri, [Problem("", f"a recipe must be a mapping of sections, got {kind}")])
    return data


#: suffix of a key whose list is appended to the inherited list (``objectives+:``)
APPEND = "+"


class _AppendError(ValueError):
    """``key+:`` used where there is no list to append to, or with a value that is not a list."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _append_target(key: Any) -> str | None:
    """``name`` for a key ``name+`` (append to the list ``name``), else ``None``."""
    return key[:-1] if isinstance(key, str) and key.endswith(APPEND) and len(key) > 1 else None


def _append(current: Any, items: Any, key: str) -> list[Any]:
    if not isinstance(items, list):
        raise _AppendError(key + APPEND, f"expected a list of items to append to '{key}', got {type(items).__name__}")
    if current is None:
        return copy.deepcopy(items)
    if not isinstance(current, list):
        raise _AppendError(key + APPEND, f"'{key}' is not a list here, so nothing can be appended to it")
    return current + copy.deepcopy(items)


def deep_merge(base: Any, override: Any) -> Any:
    """Merge ``override`` onto ``base`` (mappings recursively; a changed ``type:`` replaces; a key
    ``name+`` appends its list to ``base[name]``)."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return resolve_appends(override)
    if "type" in override and override.get("type") != base.get("type"):
        return resolve_appends(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        target = _append_target(key)
        if target is not None:
            merged[target] = _append(merged.get(target), value, target)
        else:
            merged[key] = deep_merge(merged[key], value) if key in merged else resolve_appends(value)
    return merged


def resolve_appends(data: Any) -> Any:
    """A copy of ``data`` with every ``name+`` key merged into ``name`` of the same mapping (used
    where there is no parent: ``name+`` then simply lists the items, after any ``name`` ones)."""
    if isinstance(data, list):
        return [resolve_appends(v) for v in data]
    if not isinstance(data, dict):
        return copy.deepcopy(data)
    plain = {k: resolve_appends(v) for k, v in data.items() if _append_target(k) is None}
    for key, value in data.items():
        target = _append_target(key)
        if target is not None:
            plain[target] = _append(plain.get(target), resolve_appends(value), target)
    return plain


def _resolve_relative(parent_uri: str, ref: str) -> str:
    if "://" in ref or ref.startswith("/"):
        return ref
    protocol, sep, path = parent_uri.rpartition("://")
    directory = posixpath.dirname(path if sep else parent_uri)
    joined = posixpath.normpath(posixpath.join(directory, ref)) if directory else ref
    return f"{protocol}://{joined}" if sep else joined


def load_recipe_data(uri: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recipe at ``uri`` as plain data with its ``base:`` chain merged in."""
    if uri in _chain:
        raise RecipeError(uri, [Problem("base", f"base recipes form a cycle: {' -> '.join(_chain + (uri,))}")])
    if len(_chain) >= MAX_BASE_DEPTH:
        raise RecipeError(uri, [Problem("base", f"base recipes nest deeper than {MAX_BASE_DEPTH}")])
    data = _parse(uri, read_recipe_text(uri, regular_file=bool(_chain)))
    base_ref = data.pop("base", None)
    if base_ref is None:
        try:
            return resolve_appends(data)
        except _AppendError as exc:
            raise RecipeError(uri, [Problem(exc.key, str(exc))]) from None
    if not isinstance(base_ref, str):
        raise RecipeError(uri, [Problem("base", "expected the path of a base recipe (a string)")])
    base_uri = _resolve_relative(uri, base_ref)
    try:
        base = load_recipe_data(base_uri, _chain + (uri,))
    except UsageError as exc:
        if isinstance(exc, RecipeError):
            raise
        raise RecipeError(uri, [Problem("base", str(exc))]) from None
    try:
        return deep_merge(base, data)
    except _AppendError as exc:
        raise RecipeError(uri, [Problem(exc.key, str(exc))]) from None


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...], source: str) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to recipe data."""
    data = copy.deepcopy(data)
    problems: list[Problem] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        target = _append_target(key)
        append, key = target is not None, target or key
        if not sep or not key:
            problems.append(Problem("--set", f"{item!r} must look like key.path=value"))
            continue
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except RecipeLimitError as exc:
            problems.append(Problem("--set", f"{excerpt(key)}: the value is too large or deep ({exc})"))
            continue
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(Problem(here, f"--set: no list item {part!r} here ({len(node)} items)"))
                    break
                node = node[int(part)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                problems.append(Problem(here, "--set: cannot set a key inside a scalar value"))
                break
        else:
            last = parts[-1]
            if isinstance(node, list):
                if last.isdigit() and int(last) < len(node):
                    node[int(last)] = value
                else:
                    problems.append(Problem(key, f"--set: no list item {last!r} here ({len(node)} items)"))
            elif isinstance(node, dict) and append:
                try:
                    node[last] = _append(node.get(last), value if isinstance(value, list) else [value], last)
                except _AppendError as exc:
                    problems.append(Problem(key + APPEND, f"--set: {exc}"))
            elif isinstance(node, dict):
                if isinstance(node.get(last), dict) and isinstance(value, dict):
                    node[last] = deep_merge(node[last], value)
                else:
                    node[last] = value
            else:
                problems.append(Problem(key, "--set: cannot set a key inside a scalar value"))
    if problems:
        raise RecipeError(source, problems)
    return data


def load_recipe(uri: str, overrides: list[str] | tuple[str, ...] = (), *, host: Any = None):
    """Load, merge, override and validate a recipe.

    :returns: a validated :class:`cavkit.recipe.schema.Recipe` (component slots as nodes).
    :raises RecipeError: listing every problem with its key path.
    """
    from cavkit.plugins import get_plugin_host
    from cavkit.recipe.schema import validate_recipe

    data = apply_overrides(load_recipe_data(uri), overrides, uri)
    return validate_recipe(data, source=uri, host=host or get_plugin_host())

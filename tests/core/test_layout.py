"""The package layout the code relies on: commands live in ``<area>/commands.py``, ``default_plugins``
only registers, and library modules neither reach the process-wide plugin host nor import CLI code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cavkit"
CLI_MODULES = {"cli.py", "cli_options.py"}


def _is_command_module(path: Path) -> bool:
    """An area's click commands: ``commands.py`` (or a ``*_command.py`` it registers beside it)."""
    return path.name in CLI_MODULES or path.name.endswith(("commands.py", "_command.py"))


def _modules(*areas: str) -> list[Path]:
    return sorted(p for area in areas for p in (PACKAGE / area).rglob("*.py") if not _is_command_module(p))


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "default_plugins").glob("*.py")), ids=lambda p: p.name)
def test_default_plugins_only_register(path):
    """Top level: docstring, imports, constant tables and @hookimpl functions; no click, no command bodies."""
    tree = ast.parse(path.read_text())
    assert "click" not in _imported_modules(tree), f"{path.name} imports click: commands belong in <area>/commands.py"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            assert decorators == ["hookimpl"], f"{path.name}: {node.name} is not a hook implementation"
            assert node.name in ("cavkit_register_components", "cavkit_register_commands"), node.name
        else:
            allowed = (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)
            assert isinstance(node, allowed), f"{path.name}: unexpected top-level {type(node).__name__}"


@pytest.mark.parametrize(
    "path",
    _modules("models", "pictures", "evaluation", "data", "weights") + [PACKAGE / "engine" / "preflight.py"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_library_modules_do_not_reach_the_plugin_host_or_the_cli(path):
    tree = ast.parse(path.read_text())
    imported = _imported_modules(tree)
    assert not any(name.endswith(".commands") or name in ("cavkit.cli", "cavkit.cli_options") for name in imported), (
        f"{path.relative_to(PACKAGE)} imports CLI code: {sorted(imported)}"
    )
    called = {
        node.attr if isinstance(node, ast.Attribute) else node.id
        for node in ast.walk(tree)
        if isinstance(node, (ast.Name, ast.Attribute))
    }
    assert "get_plugin_host" not in called, (
        f"{path.relative_to(PACKAGE)} reads the process-wide plugin host; take a registry or host argument"
    )


def test_a_model_config_built_by_hand_is_refused_with_the_fix():
    """Default parts are resolved when a node is validated, never looked up while building."""
    from cavkit.models.configs import CAVMAEConfig
    from cavkit.models.slots import build_slot

    assert CAVMAEConfig().encoder is None
    with pytest.raises(ValueError, match="build model configs by validating a recipe node"):
        build_slot(CAVMAEConfig().encoder, "encoder", "cav_mae_encoder")


def test_validation_fills_default_parts_also_for_an_explicit_null():
    from cavkit.config import structure_node
    from cavkit.plugins import build_plugin_host

    registry = build_plugin_host(autoload=False).registry
    for data in ({"type": "cav_mae_sync"}, {"type": "cav_mae_sync", "encoder": None, "audio_masker": None}):
        node, problems = structure_node("model", data, registry=registry)
        assert not problems, problems
        assert node.config.encoder.type == "sync_encoder"
        assert node.config.audio_masker.type == "unstructured"
        assert node.config.decoder.type == "mae_decoder"


@pytest.mark.parametrize(
    "path",
    _modules("models", "pictures", "evaluation", "data", "engine", "checkpoints", "weights", "verify", "recipe",
             "objectives", "nn"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_click_stays_in_command_modules(path):
    """An area's library code is usable without the CLI: click is imported only by ``commands.py``."""
    assert "click" not in _imported_modules(ast.parse(path.read_text())), (
        f"{path.relative_to(PACKAGE)} imports click; move its command to the area's commands.py"
    )

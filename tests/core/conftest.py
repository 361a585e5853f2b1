"""Fixtures for the core tests: throw-away plugin distributions installed on a temporary path.

``site.add_dist(...)`` writes a real distribution (``*.dist-info`` with ``entry_points.txt`` and the
plugin's modules) so that cavkit discovers it through ``importlib.metadata`` exactly as it would an
installed one. The ``toy`` plugin registers one small component of several kinds (factories return
plain dicts: these tests need no torch).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from cavkit.plugins import build_plugin_host, set_plugin_host

TOY_CONFIGS = """
from typing import Literal

import attrs

from cavkit.config import ComponentNode, at_least, component, in_range, param


@attrs.frozen(kw_only=True)
class ToyEncoderConfig:
    depth: int = param(2, help="blocks", validator=in_range(1, 24))


@attrs.frozen(kw_only=True)
class ToyModelConfig:
    width: int = param(4, help="model width", validator=at_least(1))
    mode: Literal["audio", "video"] = param("audio", help="which stream")
    encoder: ComponentNode | None = component("encoder", default=None, help="the encoder")


@attrs.frozen(kw_only=True)
class ToyLossConfig:
    temperature: float = param(0.07, help="softmax temperature", validator=at_least(0.0))


@attrs.frozen(kw_only=True)
class EmptyConfig:
    pass
"""

TOY_PLUGIN = """
from cavkit import hookimpl


def build(config, **context):
    return {"config": config, "context": context}


@hookimpl
def cavkit_register_components(registry):
    registry.add("model", "toy_model", "cavkit_toy.plugin:build", "cavkit_toy.configs:ToyModelConfig",
                 summary="a toy model")
    registry.add("encoder", "toy_encoder", build, "cavkit_toy.configs:ToyEncoderConfig")
    registry.add("encoder", "toy_encoder_b", build, "cavkit_toy.configs:ToyEncoderConfig")
    registry.add("objective", "toy_loss", build, "cavkit_toy.configs:ToyLossConfig")
    registry.add("retrieval_strategy", "toy_retrieval", build, "cavkit_toy.configs:EmptyConfig")
    registry.add("dataset", "toy_data", build, "cavkit_toy.configs:EmptyConfig")
"""


class Site:
    """A directory on ``sys.path`` holding throw-away distributions."""

    def __init__(self, root: Path):
        self.root = root
        self.modules: list[str] = []

    def add_dist(self, dist: str, version: str, entry_points: dict[str, str], files: dict[str, str]) -> None:
        """Write distribution ``dist`` with ``entry_points`` (group ``cavkit``) and module ``files``."""
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[cavkit]\n{eps}")
        tops = sorted({rel.split("/")[0].removesuffix(".py") for rel in files})
        (info / "top_level.txt").write_text("\n".join(tops) + "\n")
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        self.modules += tops

    def add_toy(self) -> None:
        self.add_dist(
            "cavkit-toy", "0.3.1", {"toy": "cavkit_toy.plugin"},
            {"cavkit_toy/__init__.py": "", "cavkit_toy/configs.py": TOY_CONFIGS, "cavkit_toy/plugin.py": TOY_PLUGIN},
        )


@pytest.fixture(autouse=True)
def _clean_plugin_state(monkeypatch):
    """No CAVKIT_* switches from the environment, and no cached plugin host between tests."""
    for var in ("CAVKIT_STRICT_PLUGINS", "CAVKIT_DISABLE_PLUGIN_AUTOLOAD", "CAVKIT_BLOCK_PLUGINS", "CAVKIT_DEBUG",
                "CAVKIT_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    set_plugin_host(None)
    yield
    set_plugin_host(None)


@pytest.fixture
def site(tmp_path, monkeypatch):
    s = Site(tmp_path / "site")
    s.root.mkdir()
    monkeypatch.syspath_prepend(str(s.root))
    yield s
    for name in list(sys.modules):
        if name.partition(".")[0] in s.modules:
            del sys.modules[name]


@pytest.fixture
def toy_host(site):
    """Built-ins plus the toy plugin (registered directly; autoload off). Lenient, so that a
    built-in area that is broken does not hide what these tests check."""
    site.add_toy()
    import cavkit_toy.plugin

    return build_plugin_host(autoload=False, strict=False, extra_plugins=(cavkit_toy.plugin,))

"""The command line: torch-free startup, components listing/showing, and discovery of the
installed cavkit-example plugin through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cavkit.testing import run_cli

REPO = Path(__file__).resolve().parents[2]

# Runs the real CLI in a fresh interpreter and reports whether torch got imported.
TORCH_PROBE = """
import sys
from cavkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED", code, file=sys.stderr)
"""

SHOW_ALL_PROBE = """
import sys
from cavkit.config import describe_params
from cavkit.plugins import build_plugin_host
host = build_plugin_host()
for spec in host.registry.specs():
    describe_params(spec.config_class())
print(len(host.registry.specs()), "TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED")
"""


def run_python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["components"], ["components", "retrieval_strategy"],
                                  ["plugins", "--json"]])
def test_listing_commands_do_not_import_torch(args):
    result = run_python(TORCH_PROBE, *args)
    assert "TORCH_NOT_IMPORTED 0" in result.stderr, result.stderr


def test_every_component_config_can_be_described_without_torch():
    """`cavkit components show KIND NAME` must stay torch-free: config classes live in modules
    that do not import torch (every built-in and installed plugin is checked)."""
    result = run_python(SHOW_ALL_PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "TORCH_NOT_IMPORTED", result.stdout


def test_help_lists_the_core_commands():
    result = run_cli(["--help"])
    assert result.exit_code == 0
    for command in ("plugins", "components", "recipe"):
        assert f"  {command}" in result.stdout


def test_version():
    from cavkit import __version__

    assert run_cli(["--version"]).stdout.strip() == f"cavkit, version {__version__}"


def test_components_show_renders_types_defaults_and_help(toy_host):
    result = run_cli(["components", "show", "model", "toy_model"], host=toy_host)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("model cavkit-toy/toy_model  (from cavkit_toy.plugin)\n  a toy model\n")
    assert "  width: int = 4  [>= 1]\n      model width\n" in result.stdout
    assert "  mode: 'audio' | 'video' = 'audio'\n      which stream\n" in result.stdout
    assert "  encoder: encoder = None\n      the encoder\n" in result.stdout


def test_components_lists_by_kind(toy_host):
    result = run_cli(["components", "encoder"], host=toy_host)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "encoder:"
    assert "cavkit-toy/toy_encoder" in result.stdout and "toy_model" not in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["components", "widget"], "unknown kind 'widget'; kinds are: tokenizer, encoder"),
    (["components", "show", "model"], "usage: cavkit components show KIND NAME"),
    (["components", "show", "model", "toy_modl"], "unknown model 'toy_modl'; did you mean 'toy_model'?"),
    (["components", "show", "widget", "x"], "unknown kind 'widget'"),
    (["recipe", "check"], "Missing argument"),
    (["no-such-command"], "No such command"),
])
def test_bad_command_lines_exit_2(toy_host, args, message):
    result = run_cli(args, host=toy_host)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_python_dash_m_cavkit_works():
    result = subprocess.run([sys.executable, "-m", "cavkit", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "Usage: cavkit" in result.stdout


def _example_installed() -> bool:
    try:
        metadata.distribution("cavkit-example")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _example_installed(),
                    reason="cavkit-example is not pip-installed (pip install ./plugins/cavkit-example; CI does)")
def test_installed_example_plugin_is_discovered_through_its_entry_point():
    """A fresh `cavkit` process finds cavkit-example only through the `cavkit` entry point group:
    nothing imports it by path, and with autoload off it is gone."""
    (ep,) = [e for e in metadata.entry_points(group="cavkit") if e.dist is not None and e.dist.name == "cavkit-example"]
    assert ep.value == "cavkit_example.plugin"

    result = run_python(TORCH_PROBE, "plugins", "--json")
    data = json.loads(result.stdout)
    (plugin,) = [p for p in data["plugins"] if p["dist"] == "cavkit-example"]
    assert plugin["name"] == ep.name
    assert plugin["version"] == metadata.version("cavkit-example")
    assert "retrieval_strategy cavkit-example/smooth_max" in plugin["components"]
    assert "TORCH_NOT_IMPORTED 0" in result.stderr

    off = run_python(TORCH_PROBE, "plugins", "--json", env={"CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert all(p["dist"] != "cavkit-example" for p in json.loads(off.stdout)["plugins"])

    shown = subprocess.run([sys.executable, "-m", "cavkit", "components", "show", "retrieval_strategy",
                            "cavkit-example/smooth_max"], capture_output=True, text=True, cwd=REPO)
    assert shown.returncode == 0 and "temperature: float = 0.05" in shown.stdout


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_debug_adds_the_traceback_but_keeps_the_exit_code(tmp_path, debug):
    missing = str(tmp_path / "missing.yaml")
    result = run_cli([*debug, "recipe", "check", missing])
    assert result.exit_code == 2  # a usage error, with or without --debug
    assert f"Error: {missing}" in result.stderr
    assert ("Traceback" in result.stderr) == bool(debug)


class _LongNamePlugin:
    from cavkit import hookimpl

    @hookimpl
    def cavkit_register_components(self, registry):
        registry.add(
            "retrieval_strategy",
            "a_strategy_whose_name_is_longer_than_the_column",
            "cavkit.evaluation.strategies:build_pooled",
            "cavkit.evaluation.configs:PooledConfig",
            summary="its summary",
        )


def test_components_list_keeps_long_qualified_ids_apart_from_their_summary():
    from cavkit.testing import plugin_host

    result = run_cli(["components", "retrieval_strategy"], host=plugin_host(_LongNamePlugin()))
    assert result.exit_code == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "a_strategy_whose_name" in line]
    qualified, summary = line.strip().split("  ", 1)
    assert qualified.endswith("/a_strategy_whose_name_is_longer_than_the_column") and summary.strip() == "its summary"
    rows = [row for row in result.stdout.splitlines()[1:] if row.startswith("    ")]
    starts = {row.index(row.split(None, 1)[1], 4 + len(row.split()[0])) for row in rows}
    assert len(rows) == 6 and len(starts) == 1  # one summary column for every strategy


def test_one_device_helper_and_precision_map():
    import torch

    from cavkit.devices import autocast_dtype, resolve_device
    from cavkit.errors import UsageError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="'gpu0' is not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device is available here; use --device cpu"):
            resolve_device("cuda:1")
    assert [autocast_dtype(p) for p in ("fp32", "fp16", "bf16")] == [None, torch.float16, torch.bfloat16]
    with pytest.raises(UsageError, match="precision 'fp8' is not one of fp32, fp16, bf16"):
        autocast_dtype("fp8")
    bad = run_cli(["embed", "--checkpoint", "x.pth", "--dataset-type", "synthetic", "--out", "x.npz", "--device", "gpu0"])
    assert bad.exit_code == 2 and "--device 'gpu0' is not a device; use auto, cpu, cuda or cuda:N" in bad.stderr


def test_a_cuda_index_must_exist_and_is_for_one_process_only(monkeypatch):
    """``cuda:N`` names one of the machine's GPUs; under torchrun every rank takes its LOCAL_RANK's GPU.

    The machine is made to look like one with two GPUs (the checks run before anything touches CUDA).
    """
    import torch

    from cavkit.devices import resolve_device
    from cavkit.engine.dist import init_distributed
    from cavkit.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UsageError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UsageError, match="under torchrun each process trains on the GPU of its LOCAL_RANK"):
        init_distributed("cuda:1")

"""The plugin manager: discovery through entry points, contained failures, strict mode, names."""

from __future__ import annotations

import json
import re

import pytest

from cavkit.errors import AmbiguousComponentError, PluginLoadError
from cavkit.plugins import DEFAULT_PLUGINS, build_plugin_host
from cavkit.testing import run_cli

GOOD = """
from cavkit import hookimpl
from cavkit_toy.plugin import build

@hookimpl
def cavkit_register_components(registry):
    registry.add("encoder", "{name}", build, "cavkit_toy.configs:EmptyConfig")
"""


def failures_by_name(host):
    return {f.name: f for f in host.failures}


def test_entry_point_plugin_is_discovered_with_its_distribution_and_version(site):
    site.add_toy()
    host = build_plugin_host()
    info = next(p for p in host.plugins if p.name == "toy")
    assert (info.dist, info.version, info.builtin) == ("cavkit-toy", "0.3.1", False)
    spec = host.registry.get("model", "toy_model")
    assert spec.qualified_id == "cavkit-toy/toy_model"
    assert spec.source == "toy"
    assert host.versions()["cavkit-toy"] == "0.3.1"


def test_autoload_can_be_switched_off(site, monkeypatch):
    site.add_toy()
    monkeypatch.setenv("CAVKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = build_plugin_host()
    assert "toy" not in {p.name for p in host.plugins}
    assert {p.name for p in host.plugins} == set(DEFAULT_PLUGINS)


def test_blocked_plugin_is_not_imported(site, monkeypatch):
    site.add_toy()
    monkeypatch.setenv("CAVKIT_BLOCK_PLUGINS", "other, toy")
    host = build_plugin_host()
    assert "toy" not in {p.name for p in host.plugins}
    import sys

    assert "cavkit_toy.plugin" not in sys.modules


def test_plugin_that_fails_to_import_is_reported_and_the_rest_still_work(site, capsys):
    site.add_toy()
    site.add_dist("cavkit-broken", "1.2", {"broken": "cavkit_broken"},
                  {"cavkit_broken.py": "import this_module_does_not_exist\n"})
    host = build_plugin_host()
    failure = failures_by_name(host)["broken"]
    assert (failure.dist, failure.version, failure.stage) == ("cavkit-broken", "1.2", "import")
    assert "ModuleNotFoundError" in failure.error and "this_module_does_not_exist" in failure.error
    assert "plugin 'broken' (cavkit-broken 1.2) failed to import" in capsys.readouterr().err
    assert host.registry.get("model", "toy_model")  # the healthy plugin still works


def test_plugin_whose_registration_raises_is_rolled_back(site):
    site.add_toy()
    site.add_dist("cavkit-half", "0.1", {"half": "cavkit_half"}, {"cavkit_half.py": """
        from cavkit import hookimpl
        from cavkit_toy.plugin import build

        @hookimpl
        def cavkit_register_components(registry):
            registry.add("masker", "half_done", build, "cavkit_toy.configs:EmptyConfig")
            raise RuntimeError("boom after one registration")
    """})
    host = build_plugin_host()
    failure = failures_by_name(host)["half"]
    assert failure.stage == "register" and "boom after one registration" in failure.error
    assert "half_done" not in host.registry.names("masker")
    assert "half" not in {p.name for p in host.plugins}
    assert not host.pm.has_plugin("half")


def test_misspelt_hook_is_a_load_failure_not_a_silent_no_op(site):
    site.add_dist("cavkit-typo", "0.1", {"typo": "cavkit_typo"}, {"cavkit_typo.py": """
        from cavkit import hookimpl

        @hookimpl
        def cavkit_register_component(registry):
            pass
    """})
    host = build_plugin_host()
    failure = failures_by_name(host)["typo"]
    assert failure.stage == "register"  # it imported fine; its hook name is wrong
    assert failure.error == ("unknown hook(s) cavkit_register_component; cavkit's hooks are "
                             "cavkit_register_commands, cavkit_register_components")
    assert str(failure).startswith("plugin 'typo' (cavkit-typo 0.1) failed to register: ")


def test_a_misspelt_lazy_factory_fails_the_plugin_at_start_not_in_train(site, tmp_path):
    """A typo in a 'module:attr' factory is reported by `cavkit plugins`, and a recipe naming the
    component fails `recipe check` with one message naming the failed plugin (no traceback)."""
    site.add_dist("cavkit-lazytypo", "0.1", {"lazytypo": "cavkit_lazytypo.plugin"}, {
        "cavkit_lazytypo/__init__.py": "",
        "cavkit_lazytypo/configs.py": "import attrs\n\n@attrs.frozen\nclass Empty:\n    pass\n",
        "cavkit_lazytypo/losses.py": "def build_loss(config):\n    return None\n",
        "cavkit_lazytypo/plugin.py": """
            from cavkit import hookimpl

            @hookimpl
            def cavkit_register_components(registry):
                registry.add("objective", "typo_loss", "cavkit_lazytypo.losses:build_los",
                             "cavkit_lazytypo.configs:Empty")
        """})
    listing = run_cli(["plugins"])
    assert listing.exit_code == 0
    assert ("objective 'typo_loss': factory 'cavkit_lazytypo.losses:build_los' does not resolve: module "
            "'cavkit_lazytypo.losses' defines no 'build_los'; did you mean cavkit_lazytypo.losses:build_loss?"
            ) in listing.stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {type: cav_mae}\nobjectives: [{type: typo_loss}]\n")
    check = run_cli(["recipe", "check", str(recipe)])
    assert check.exit_code == 2
    assert "objectives.0.type: unknown objective 'typo_loss'" in check.stderr
    assert "plugins that failed to load: lazytypo" in check.stderr
    assert "Traceback" not in check.stderr


def test_strict_mode_makes_a_failure_fatal(site, monkeypatch):
    site.add_dist("cavkit-broken", "1.2", {"broken": "cavkit_broken"}, {"cavkit_broken.py": "raise ImportError('nope')\n"})
    with pytest.raises(PluginLoadError, match=r"plugin 'broken' \(cavkit-broken 1.2\) failed to import: ImportError: nope"):
        build_plugin_host(strict=True)
    monkeypatch.setenv("CAVKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="strict plugin mode"):
        build_plugin_host()


def test_strict_flag_on_the_command_line(site):
    site.add_dist("cavkit-broken", "1.2", {"broken": "cavkit_broken"}, {"cavkit_broken.py": "raise ImportError('nope')\n"})
    lenient = run_cli(["components"])
    assert lenient.exit_code == 0
    assert "plugin 'broken' failed to load" in lenient.stdout
    strict = run_cli(["--strict-plugins", "components"])
    assert strict.exit_code == 1
    assert "failed to import: ImportError: nope (strict plugin mode)" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_plugin_reusing_a_builtin_name_is_refused_with_both_origins(site):
    taken = build_plugin_host(autoload=False).registry.get("objective", "infonce")
    site.add_toy()
    site.add_dist("cavkit-rogue", "0.1", {"rogue": "cavkit_rogue"}, {"cavkit_rogue.py": f"""
        from cavkit import hookimpl
        from cavkit_toy.plugin import build

        @hookimpl
        def cavkit_register_components(registry):
            registry.add("masker", "rogue_ok", build, "cavkit_toy.configs:EmptyConfig")
            registry.add("{taken.kind}", "{taken.name}", build, "cavkit_toy.configs:EmptyConfig")
    """})
    host = build_plugin_host()
    failure = failures_by_name(host)["rogue"]
    assert failure.stage == "register"
    assert f"'cavkit-rogue' tried to register {taken.kind} '{taken.name}'" in failure.error
    assert "'cavkit' already provides" in failure.error
    assert host.registry.get(taken.kind, taken.name).plugin == "cavkit"  # never overwritten
    assert "rogue_ok" not in host.registry.names("masker")  # the whole plugin is rolled back


def test_two_plugins_with_one_name_are_ambiguous_until_qualified(site, tmp_path):
    site.add_toy()
    site.add_dist("cavkit-one", "0.1", {"one": "cavkit_one"}, {"cavkit_one.py": GOOD.format(name="shared")})
    site.add_dist("cavkit-two", "0.1", {"two": "cavkit_two"}, {"cavkit_two.py": GOOD.format(name="shared")})
    host = build_plugin_host()
    assert not host.failures
    with pytest.raises(AmbiguousComponentError, match="cavkit-one/shared, cavkit-two/shared"):
        host.registry.get("encoder", "shared")
    assert host.registry.get("encoder", "cavkit-two/shared").plugin == "cavkit-two"

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {type: toy_model, encoder: {type: shared}}\n")
    result = run_cli(["recipe", "check", str(recipe)], host=host)
    assert result.exit_code == 2
    assert "model.encoder.type: encoder 'shared' is registered by several plugins" in result.stderr
    assert "(cavkit-one/shared, cavkit-two/shared); use a qualified id" in result.stderr
    recipe.write_text("model: {type: toy_model, encoder: {type: cavkit-one/shared}}\n")
    assert run_cli(["recipe", "check", str(recipe)], host=host).exit_code == 0
    listing = run_cli(["components", "encoder"], host=host).stdout
    # the name column is as wide as the longest id; the ambiguity note follows the qualified id on its row
    assert re.search(r"^ +cavkit-one/shared +\[ambiguous bare name: use cavkit-one/shared\]", listing, re.M), listing


def test_entry_point_name_clash_between_distributions_is_reported(site):
    site.add_toy()
    site.add_dist("cavkit-clash", "0.1", {"toy": "cavkit_clash"}, {"cavkit_clash.py": GOOD.format(name="clash")})
    host = build_plugin_host()
    # entry points are loaded in (name, distribution) order: cavkit-clash wins, cavkit-toy is refused
    (failure,) = host.failures
    assert failure.dist == "cavkit-toy"
    assert "entry point name 'toy' is already used by 'cavkit-clash'" in failure.error


def test_plugin_commands_are_added_and_a_broken_one_is_contained(site):
    site.add_dist("cavkit-cmds", "0.2", {"cmds": "cavkit_cmds"}, {"cavkit_cmds.py": """
        import click
        from cavkit import hookimpl

        @hookimpl
        def cavkit_register_commands(cli):
            @cli.command("hello")
            @click.argument("who")
            def hello(who):
                '''Say hello.'''
                click.echo(f"hello {who}")
    """})
    site.add_dist("cavkit-badcmd", "0.1", {"badcmd": "cavkit_badcmd"}, {"cavkit_badcmd.py": """
        from cavkit import hookimpl

        @hookimpl
        def cavkit_register_commands(cli):
            raise RuntimeError("cannot add my command")
    """})
    assert "hello" in run_cli(["--help"]).stdout
    result = run_cli(["hello", "world"])
    assert result.exit_code == 0 and result.stdout == "hello world\n"
    assert "plugin 'badcmd' (cavkit-badcmd 0.1) failed to add commands: RuntimeError: cannot add my command" in result.stderr


def test_plugins_command_lists_builtins_plugins_registrations_and_failures(site):
    site.add_toy()
    site.add_dist("cavkit-broken", "1.2", {"broken": "cavkit_broken"}, {"cavkit_broken.py": "raise ImportError('nope')\n"})
    result = run_cli(["plugins"])
    assert result.exit_code == 0, result.stderr
    assert "cavkit.default_plugins.core  (built-in; cavkit " in result.stdout
    assert "commands: components, plugins, recipe" in result.stdout
    assert "toy  (plugin; cavkit-toy 0.3.1)" in result.stdout
    assert "model cavkit-toy/toy_model" in result.stdout
    assert "FAILED broken  (cavkit-broken 1.2): could not import: ImportError: nope" in result.stdout

    data = json.loads(run_cli(["plugins", "--json"]).stdout)
    toy = next(p for p in data["plugins"] if p["name"] == "toy")
    assert toy["dist"] == "cavkit-toy" and toy["version"] == "0.3.1"
    assert "encoder cavkit-toy/toy_encoder" in toy["components"]
    assert data["failures"][0]["name"] == "broken"


def test_trace_switch_prints_what_each_plugin_registers(site, monkeypatch, capsys):
    site.add_toy()
    monkeypatch.setenv("CAVKIT_TRACE_PLUGINS", "1")
    build_plugin_host()
    err = capsys.readouterr().err
    assert "cavkit: trace: toy (cavkit-toy 0.3.1) cavkit_register_components -> encoder cavkit-toy/toy_encoder, " in err
    assert "model cavkit-toy/toy_model" in err

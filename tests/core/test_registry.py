"""The component registry: qualified ids, reserved built-in names, ambiguity, lookups, lazy references."""

from __future__ import annotations

import sys

import attrs
import pytest

from cavkit.config import param
from cavkit.errors import AmbiguousComponentError, RegistrationError, UnknownComponentError
from cavkit.registry import BUILTIN, KINDS, ComponentRegistry, ComponentSpec, resolve_ref


@attrs.frozen(kw_only=True)
class Cfg:
    size: int = param(1, help="a size")


def factory(config, **context):
    return ("built", config, context)


@pytest.fixture
def registry():
    reg = ComponentRegistry()
    builtin = reg.scoped(BUILTIN, source="cavkit.default_plugins.x")
    builtin.add("objective", "infonce", factory, Cfg, summary="built-in contrastive loss")
    builtin.add("retrieval_strategy", "pooled", factory, Cfg)
    return reg


def test_kinds_cover_the_issue():
    assert set(KINDS) >= {"tokenizer", "encoder", "decoder", "masker", "objective", "retrieval_strategy", "model", "dataset"}


def test_lookup_by_bare_name_and_qualified_id(registry):
    spec = registry.get("objective", "infonce")
    assert spec.qualified_id == "cavkit/infonce"
    assert spec.source == "cavkit.default_plugins.x"
    assert registry.get("objective", "cavkit/infonce") is spec
    assert spec.build(Cfg(size=3), split="train") == ("built", Cfg(size=3), {"split": "train"})


def test_qualified_ids_match_normalised_distribution_names():
    reg = ComponentRegistry()
    reg.scoped("cavkit-example").add("retrieval_strategy", "smooth_max", factory, Cfg)
    assert reg.get("retrieval_strategy", "cavkit_example/smooth_max").plugin == "cavkit-example"
    assert reg.get("retrieval_strategy", "Cavkit.Example/smooth_max").plugin == "cavkit-example"


def test_same_name_twice_in_one_plugin_raises(registry):
    with pytest.raises(RegistrationError, match="registered objective 'infonce' twice"):
        registry.scoped(BUILTIN).add("objective", "infonce", factory, Cfg)


def test_builtin_names_are_reserved(registry):
    with pytest.raises(RegistrationError) as err:
        registry.scoped("cavkit-rogue").add("objective", "infonce", factory, Cfg)
    message = str(err.value)
    assert "cavkit-rogue" in message and "'cavkit' already provides" in message and "reserved" in message
    # never a silent overwrite: the built-in is still what the name means
    assert registry.get("objective", "infonce").plugin == BUILTIN


def test_same_name_in_another_kind_is_fine(registry):
    registry.scoped("cavkit-x").add("model", "infonce", factory, Cfg)
    assert registry.get("model", "infonce").plugin == "cavkit-x"


def test_two_third_party_plugins_make_the_bare_name_ambiguous(registry):
    registry.scoped("cavkit-a").add("masker", "blocks", factory, Cfg)
    registry.scoped("cavkit-b").add("masker", "blocks", factory, Cfg)
    with pytest.raises(AmbiguousComponentError) as err:
        registry.get("masker", "blocks")
    assert "cavkit-a/blocks" in str(err.value) and "cavkit-b/blocks" in str(err.value)
    assert "qualified id" in str(err.value)
    assert registry.get("masker", "cavkit-b/blocks").plugin == "cavkit-b"


def test_unknown_name_suggests_close_matches_and_the_listing_command(registry):
    with pytest.raises(UnknownComponentError) as err:
        registry.get("objective", "infonse", failed_plugins=["broken"])
    message = str(err.value)
    assert "unknown objective 'infonse'" in message
    assert "did you mean 'infonce'?" in message
    assert "cavkit components objective" in message
    assert "failed to load: broken" in message


def test_name_of_another_kind_names_both_kinds(registry):
    with pytest.raises(UnknownComponentError, match="'pooled' is a retrieval_strategy, but an objective is expected here"):
        registry.get("objective", "pooled")


def test_unknown_qualifier_is_unknown(registry):
    with pytest.raises(UnknownComponentError):
        registry.get("objective", "other-plugin/infonce")


@pytest.mark.parametrize(
    ("kind", "name", "factory_ref", "config_ref", "match"),
    [
        ("widget", "x", factory, Cfg, "unknown kind 'widget'"),
        ("objective", "", factory, Cfg, "non-empty string"),
        ("objective", "a/b", factory, Cfg, "without '/'"),
        ("objective", "x", "no_colon_here", Cfg, "lazy reference"),
        ("objective", "x", 42, Cfg, "not callable"),
        ("objective", "x", factory, dict, "attrs class"),
    ],
)
def test_invalid_registrations_are_refused(kind, name, factory_ref, config_ref, match):
    with pytest.raises(RegistrationError, match=match):
        ComponentRegistry().scoped("cavkit-x").add(kind, name, factory_ref, config_ref)


def test_lazy_references_resolve_on_first_use():
    reg = ComponentRegistry()
    reg.scoped("cavkit-x").add("objective", "lazy", "cavkit.errors:UsageError", "cavkit.recipe.schema:TrainerConfig")
    spec = reg.get("objective", "lazy")
    assert spec.config_class().__name__ == "TrainerConfig"
    assert spec.factory_callable().__name__ == "UsageError"


@pytest.fixture()
def lazy_module(tmp_path, monkeypatch):
    """An importable module that no test has imported yet (so it is checked from its source)."""
    (tmp_path / "lazy_parts_for_test.py").write_text(
        "import torch\nfrom os import path as ospath\n\ndef build_thing(config):\n    return config\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lazy_parts_for_test"
    sys.modules.pop("lazy_parts_for_test", None)


@pytest.mark.parametrize(("ref", "match"), [
    ("lazy_parts_for_tset:build_thing", "no module named 'lazy_parts_for_tset'"),
    ("lazy_parts_for_test:build_thng", "module 'lazy_parts_for_test' defines no 'build_thng'; did you mean lazy_parts_for_test:build_thing"),
])
def test_a_plugin_reference_that_cannot_resolve_is_refused_at_registration(lazy_module, ref, match):
    with pytest.raises(RegistrationError, match=f"objective 'x': factory '{ref}' does not resolve: {match}"):
        ComponentRegistry().scoped("cavkit-x").add("objective", "x", ref, Cfg)
    assert "lazy_parts_for_test" not in sys.modules  # checked from the source, never imported


def test_a_good_plugin_reference_is_accepted_without_importing_it(lazy_module):
    reg = ComponentRegistry()
    reg.scoped("cavkit-x").add("objective", "x", "lazy_parts_for_test:build_thing", Cfg)
    reg.scoped("cavkit-x").add("objective", "y", "lazy_parts_for_test:ospath", Cfg)  # imported names count
    assert "lazy_parts_for_test" not in sys.modules
    assert reg.get("objective", "x").factory_callable()(1) == 1


def test_a_reference_that_breaks_later_is_a_clean_error_when_built():
    spec = ComponentSpec("objective", "gone", BUILTIN, "cavkit.errors:NoSuchFactory", Cfg)
    with pytest.raises(RegistrationError, match="objective 'cavkit/gone': its factory 'cavkit.errors:NoSuchFactory' "
                                                "cannot be imported .*AttributeError"):
        spec.build(Cfg())
    assert resolve_ref("cavkit.registry:ComponentRegistry.get") is ComponentRegistry.get
    with pytest.raises(RegistrationError):
        resolve_ref("cavkit.registry")


def test_remove_plugin_rolls_back_only_that_plugin(registry):
    registry.scoped("cavkit-a").add("masker", "blocks", factory, Cfg)
    registry.scoped("cavkit-b").add("masker", "blocks", factory, Cfg)
    registry.remove(plugin="cavkit-a")
    assert registry.get("masker", "blocks").plugin == "cavkit-b"
    assert registry.get("objective", "infonce").plugin == BUILTIN


def test_specs_are_sorted_by_kind_then_name(registry):
    registry.scoped("cavkit-x").add("model", "zeta", factory, Cfg)
    registry.scoped("cavkit-x").add("model", "alpha", factory, Cfg)
    ids = [s.qualified_id for s in registry.specs()]
    assert ids == ["cavkit/infonce", "cavkit/pooled", "cavkit-x/alpha", "cavkit-x/zeta"]
    assert registry.names("model") == ["alpha", "zeta"]


def test_config_parameters_may_not_shadow_node_keys():
    from cavkit.config import structure_node

    @attrs.frozen(kw_only=True)
    class Shadowing:
        name: str = param("x", help="clashes with the node label")

    reg = ComponentRegistry()
    reg.scoped("cavkit-x").add("objective", "shadow", factory, Shadowing)
    node, problems = structure_node("objective", {"type": "shadow"}, registry=reg, path="objectives.0")
    assert node is None
    assert [str(p) for p in problems] == [
        "objectives.0: objective 'cavkit-x/shadow' declares parameter(s) 'name', which recipe nodes reserve "
        "(type, name); the plugin must rename them"
    ]

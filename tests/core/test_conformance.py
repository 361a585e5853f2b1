"""Every built-in component meets its kind's contract: it resolves, its default config validates,
it builds, and it runs once on a tiny synthetic input (cavkit.testing.check_component)."""

from __future__ import annotations

import attrs
import pytest

from cavkit.plugins import build_plugin_host
from cavkit.testing import check_component, tiny_model

pytest.importorskip("torch")

HOST = build_plugin_host(autoload=False, strict=False)
# weights entries are catalogue records, not parts that build and run: tests/weights/test_zoo.py checks each one
BUILTINS = [s for s in HOST.registry.specs() if s.plugin == "cavkit" and s.kind != "weights"]


def tiny_params(name: str, **overrides) -> dict:
    """The parameters of :func:`tiny_model`'s node (``check_component`` names the type itself)."""
    node = tiny_model(name, **overrides)
    del node["type"]
    return node


# Small sizes for the models: the defaults are the published ViT-B sizes. The Sync encoders keep
# their default 8 register tokens here.
SYNC_REGISTERS = {"num_register_tokens": 8}
PARAMS = {
    ("model", "cav_mae"): tiny_params("cav_mae", decoder={"embed_dim": 16}),
    ("model", "cav_mae_sync"): tiny_params("cav_mae_sync", encoder=SYNC_REGISTERS, decoder={"embed_dim": 16}),
    ("model", "classifier"): tiny_params("classifier"),
    ("model", "sync_classifier"): tiny_params("sync_classifier", encoder=SYNC_REGISTERS),
    ("model", "audio_classifier"): tiny_params("audio_classifier"),
    ("aggregator", "attention"): {"depth": 1, "num_heads": 2},
}
PARAMS.update({("encoder", "cav_mae_encoder"): {"depth": 1}, ("encoder", "sync_encoder"): {"depth": 1},
               ("decoder", "mae_decoder"): {"depth": 1}})
NEEDS_FILES = {("dataset", "cav_mae"), ("dataset", "cav_mae_sync")}  # datafiles; tested in tests/data


def test_no_builtin_plugin_fails_to_load():
    assert not HOST.failures, "\n".join(map(str, HOST.failures))


@pytest.mark.parametrize("spec", BUILTINS, ids=[f"{s.kind}:{s.name}" for s in BUILTINS])
def test_builtin_component_meets_its_contract(spec):
    assert spec.summary, f"{spec.qualified_id} has no summary for `cavkit components`"
    spec.factory_callable()  # the lazy reference resolves
    if (spec.kind, spec.name) in NEEDS_FILES:
        pytest.skip("needs a datafile on disk; its contract is tested in tests/data")
    required = [f.name for f in attrs.fields(spec.config_class()) if f.default is attrs.NOTHING]
    if required and (spec.kind, spec.name) not in PARAMS:
        pytest.skip(f"has required parameters ({', '.join(required)}) naming data on disk; tested in its area's tests")
    check_component(spec.kind, spec.name, host=HOST, params=PARAMS.get((spec.kind, spec.name), {}))

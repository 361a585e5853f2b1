"""Every built-in component meets its kind's contract: it resolves, its default config validates,
it builds, and it runs once on a tiny synthetic input (cavkit.testing.check_component)."""

from __future__ import annotations

import attrs
import pytest

from cavkit.plugins import build_plugin_host
from cavkit.testing import check_component

pytest.importorskip("torch")

HOST = build_plugin_host(autoload=False, strict=False)
# weights entries are catalogue records, not parts that build and run: tests/weights/test_zoo.py checks each one
BUILTINS = [s for s in HOST.registry.specs() if s.plugin == "cavkit" and s.kind != "weights"]

TINY_ENCODER = {"depth": 1, "num_heads": 2}
# Small sizes for the models: the defaults are the published ViT-B sizes.
PARAMS = {
    ("model", "cav_mae"): {"audio_length": 32, "image_size": 32, "embed_dim": 32, "encoder": TINY_ENCODER,
                           "decoder": {"embed_dim": 16, "depth": 1, "num_heads": 2}},
    ("model", "cav_mae_sync"): {"audio_length": 32, "image_size": 32, "embed_dim": 32, "encoder": TINY_ENCODER,
                                "decoder": {"embed_dim": 16, "depth": 1, "num_heads": 2}},
    ("model", "classifier"): {"audio_length": 32, "image_size": 32, "embed_dim": 32, "num_classes": 3,
                              "encoder": TINY_ENCODER},
    ("model", "sync_classifier"): {"audio_length": 32, "image_size": 32, "embed_dim": 32, "num_classes": 3,
                                   "encoder": TINY_ENCODER, "aggregator": {"depth": 1, "num_heads": 2}},
    ("model", "audio_classifier"): {"audio_length": 32, "embed_dim": 32, "num_classes": 3, "encoder": TINY_ENCODER},
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

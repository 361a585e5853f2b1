"""cavkit.testing.tiny_model: a tiny node for every built-in model, that builds through the
registry and runs on the inputs its docstring states; overrides merge deeply and never leak."""

from __future__ import annotations

import pytest

from cavkit.config import structure_node
from cavkit.testing import check_component, plugin_host, tiny_model
from cavkit.testing.tiny import TINY_MODELS

torch = pytest.importorskip("torch")

HOST = plugin_host()


def build(node):
    built, problems = structure_node("model", node, registry=HOST.registry)
    assert not problems, problems
    torch.manual_seed(0)
    return built, built.build().eval()


def test_every_builtin_model_has_a_tiny_node():
    builtin = {s.name for s in HOST.registry.specs("model") if s.plugin == "cavkit"}
    assert set(TINY_MODELS) == builtin


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_the_tiny_node_builds_at_the_tiny_size_and_meets_the_model_contract(name):
    node = tiny_model(name)
    assert node["type"] == name
    built, model = build(node)
    assert built.config.embed_dim == 32 and built.config.audio_length == 32
    assert sum(p.numel() for p in model.parameters()) < 200_000  # the published ViT-B has ~190M
    params = {k: v for k, v in node.items() if k != "type"}
    check_component("model", name, host=HOST, params=params)  # audio [2,32,128], image [2,3,32,32]


@pytest.mark.parametrize(
    ("name", "audio_shape", "image_shape"),
    [
        ("classifier", (2, 32, 128), (2, 3, 32, 32)),
        ("sync_classifier", (2, 4, 32, 128), (2, 4, 3, 32, 32)),
        ("audio_classifier", (2, 32, 128), None),
    ],
)
def test_the_classifiers_take_the_documented_inputs(name, audio_shape, image_shape):
    _, model = build(tiny_model(name))
    audio = torch.randn(audio_shape)
    image = torch.randn(image_shape) if image_shape else None
    with torch.no_grad():
        logits = model(audio, image).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_the_pretraining_models_reconstruct_every_patch_of_the_documented_inputs():
    for name, registers in (("cav_mae", 0), ("cav_mae_sync", 2)):
        _, model = build(tiny_model(name))
        with torch.no_grad():
            out = model(torch.randn(2, 32, 128), torch.randn(2, 3, 32, 32))
        # 32x128 fbank: 2x8 patches of 16x16x1; 32x32 image: 2x2 patches of 16x16x3
        assert out.pred_audio.shape == (2, 16, 256) and out.pred_visual.shape == (2, 4, 768)
        assert model.encoder.num_register_tokens == registers


def test_overrides_merge_into_nested_nodes():
    node = tiny_model("cav_mae_sync", audio_length=64, encoder={"num_register_tokens": 0})
    assert node["encoder"] == {"depth": 1, "num_heads": 2, "num_register_tokens": 0}
    assert node["audio_length"] == 64 and node["decoder"] == {"embed_dim": 32, "depth": 1, "num_heads": 2}
    built, model = build(node)
    assert model.encoder.num_register_tokens == 0 and built.config.audio_length == 64


def test_an_override_naming_a_type_replaces_the_node():
    node = tiny_model("sync_classifier", aggregator={"type": "mean"}, encoder={"type": "cav_mae_encoder", "depth": 1})
    assert node["aggregator"] == {"type": "mean"}
    assert node["encoder"] == {"type": "cav_mae_encoder", "depth": 1}


def test_nodes_and_overrides_do_not_leak_between_calls():
    first = tiny_model("cav_mae")
    first["encoder"]["depth"] = 7
    first["decoder"]["num_heads"] = 4
    changed = tiny_model("cav_mae", encoder={"num_heads": 4})
    assert changed["encoder"] == {"depth": 1, "num_heads": 4}
    assert tiny_model("cav_mae") == TINY_MODELS["cav_mae"]
    assert TINY_MODELS["cav_mae"]["encoder"] == {"depth": 1, "num_heads": 2}
    # the shared encoder literal of cav_mae, classifier and audio_classifier is not shared by their copies
    assert tiny_model("classifier")["encoder"] == {"depth": 1, "num_heads": 2}

    override = {"type": "attention", "depth": 1, "num_heads": 4}
    node = tiny_model("sync_classifier", aggregator=override)
    override["num_heads"] = 8
    assert node["aggregator"]["num_heads"] == 4


def test_an_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="no tiny node for model 'cav_mea'; there are: cav_mae, cav_mae_sync"):
        tiny_model("cav_mea")

"""Every built-in model part through the registry, recipes with default parts, and part behaviour."""

from __future__ import annotations

import pytest
import torch

from cavkit.checkpoints.build import build_model_node
from cavkit.config import unstructure
from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput
from cavkit.models.encoder import CAVEncoder
from cavkit.models.maskers import FreqMasker, TimeFreqMasker, TimeMasker, UnstructuredMasker
from cavkit.nn.blocks import set_attn_impl
from cavkit.testing import check_component

TINY = {"audio_length": 64, "image_size": 32, "embed_dim": 16, "encoder": {"depth": 1, "num_heads": 2}}
TINY_DECODER = {"decoder": {"embed_dim": 16, "depth": 1, "num_heads": 2}}


@pytest.mark.parametrize(
    "kind,name",
    [
        ("masker", "unstructured"),
        ("masker", "time"),
        ("masker", "freq"),
        ("masker", "time_freq"),
        ("objective", "mae"),
        ("objective", "infonce"),
        ("objective", "sync_contrastive"),
        ("objective", "classification"),
    ],
)
def test_small_components_pass_the_conformance_check(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize(
    "name,params",
    [
        ("cav_mae", {**TINY, **TINY_DECODER}),
        ("cav_mae_sync", {**TINY, **TINY_DECODER}),
        ("classifier", {**TINY, "num_classes": 3}),
        (
            "classifier",
            {
                **TINY,
                "num_classes": 3,
                "mode": "missingaudioonly",
                "encoder": {"type": "sync_encoder", "depth": 1, "num_heads": 2},
            },
        ),
    ],
)
def test_models_pass_the_conformance_check(name, params):
    check = check_component("model", name, params=params)
    assert isinstance(check.output, ModelOutput)


@pytest.mark.parametrize(
    "kind,name,context,inputs,shape",
    [
        ("tokenizer", "audio_patch", {"embed_dim": 16, "audio_length": 48}, (torch.randn(2, 48, 128),), (2, 24, 16)),
        ("tokenizer", "image_patch", {"embed_dim": 16, "image_size": 32}, (torch.randn(2, 3, 32, 32),), (2, 4, 16)),
    ],
)
def test_tokenizers_build_alone(kind, name, context, inputs, shape):
    module = check_component(kind, name, context=context).component
    assert module(*inputs).shape == shape


def test_encoder_and_decoder_build_alone():
    enc = check_component(
        "encoder", "sync_encoder", params={"depth": 1, "num_heads": 2}, context={"embed_dim": 16}
    ).component
    out = enc(torch.randn(2, 5, 16), torch.randn(2, 3, 16))
    assert out.joint.shape == (2, 8, 16) and out.audio_global.shape == (2, 16) and out.visual.shape == (2, 3, 16)
    dec = check_component(
        "decoder",
        "mae_decoder",
        params={"embed_dim": 8, "depth": 1, "num_heads": 2},
        context={
            "encoder_dim": 16,
            "audio_grid": (2, 4),
            "visual_grid": (2, 2),
            "audio_patch_dim": 256,
            "visual_patch_dim": 768,
        },
    ).component
    ids_a = torch.stack([torch.randperm(8) for _ in range(2)])
    ids_v = torch.stack([torch.randperm(4) for _ in range(2)])
    pred_a, pred_v = dec(torch.randn(2, 3, 16), ids_a, ids_v, 2)
    assert pred_a.shape == (2, 8, 256) and pred_v.shape == (2, 4, 768)


def test_model_type_alone_gives_the_released_configurations():
    sync = unstructure(build_model_node({"type": "cav_mae_sync"}))
    assert sync["audio_length"] == 416 and sync["image_size"] == 224 and sync["embed_dim"] == 768
    assert sync["encoder"]["type"] == "sync_encoder"
    assert sync["encoder"]["global_tokens"] is True and sync["encoder"]["num_register_tokens"] == 8
    assert sync["encoder"]["contrastive_head_depth"] == 0 and sync["encoder"]["depth"] == 11
    assert sync["decoder"] == {
        "type": "mae_decoder",
        "embed_dim": 512,
        "depth": 8,
        "num_heads": 16,
        "mlp_ratio": 4.0,
        "attn_impl": "sdpa",
    }
    assert sync["audio_masker"] == {
        "type": "unstructured",
        "ratio": 0.75,
        "multi_ratio_masking": False,  # released: one fixed ratio (spec §4.5)
        "ratio_range": [0.6, 0.9],
    }
    cav = unstructure(build_model_node({"type": "cav_mae"}))
    assert cav["audio_length"] == 1024 and cav["encoder"]["type"] == "cav_mae_encoder"
    assert cav["encoder"]["global_tokens"] is False and cav["encoder"]["num_register_tokens"] == 0
    clf = unstructure(build_model_node({"type": "classifier"}))
    assert clf["num_classes"] == 527 and clf["trainable_pos"] is True and clf["mode"] == "multimodal"


def test_recipe_overrides_reach_nested_parts(tmp_path):
    from cavkit.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {type: cav_mae_sync}\nobjectives: [{type: mae}, {type: sync_contrastive, weight: 0.01}]\n"
    )
    loaded = load_recipe(str(recipe), ["model.encoder.depth=4", "model.audio_masker.ratio=0.5"])
    assert loaded.model.config.encoder.type == "sync_encoder"
    assert loaded.model.config.encoder.config.depth == 4
    assert loaded.model.config.encoder.config.num_register_tokens == 8
    assert loaded.model.config.audio_masker.config.ratio == 0.5
    with pytest.raises(UsageError, match="model.encoder.dept.*did you mean 'depth'"):
        load_recipe(str(recipe), ["model.encoder.dept=4"])


def test_wrong_input_shapes_name_what_was_expected():
    model = build_model_node({"type": "cav_mae", **TINY, **TINY_DECODER}).build()
    with pytest.raises(UsageError, match=r"audio input has shape \[2, 60, 128\], expected \[B, 64, 128\]"):
        model(torch.randn(2, 60, 128), torch.randn(2, 3, 32, 32))
    with pytest.raises(UsageError, match=r"image input has shape \[2, 3, 64, 64\], expected \[B, 3, 32, 32\]"):
        model.embed(None, torch.randn(2, 3, 64, 64))


# -- maskers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75, 0.9])
@pytest.mark.parametrize("grid", [(8, 6), (8, 26), (8, 64)])
def test_unstructured_masker_any_ratio_and_length(ratio, grid):
    length = grid[0] * grid[1]
    tokens = torch.randn(3, length, 4)
    out = UnstructuredMasker(ratio)(tokens, None, grid=grid)
    keep = int(length * (1 - ratio))
    assert out.kept.shape == (3, keep, 4)
    assert torch.all(out.mask.sum(1) == length - keep)


def test_given_noise_reproduces_the_mask():
    tokens = torch.randn(2, 48, 4)
    noise = torch.rand(2, 48)
    a = UnstructuredMasker(0.75)(tokens, noise)
    b = UnstructuredMasker(0.75)(tokens, noise.clone())
    assert torch.equal(a.mask, b.mask) and torch.equal(a.kept, b.kept)
    # the kept tokens are exactly the lowest-noise ones
    lowest = noise.argsort(1)[:, :12]
    assert torch.all(torch.gather(a.mask, 1, lowest) == 0)


@pytest.mark.parametrize("grid", [(8, 26), (8, 64), (8, 6)])
def test_structured_maskers_remove_whole_lines(grid):
    rows, cols = grid
    tokens = torch.randn(4, rows * cols, 2)
    time_mask = TimeMasker(0.75)(tokens, None, grid=grid).mask.reshape(4, rows, cols)
    removed_cols = (time_mask.sum(1) == rows).sum(1)
    assert torch.all(removed_cols == int(cols * 0.75))
    freq_mask = FreqMasker(0.75)(tokens, None, grid=grid).mask.reshape(4, rows, cols)
    assert torch.all((freq_mask.sum(2) == cols).sum(1) == int(rows * 0.75))
    tf = TimeFreqMasker(0.75)(tokens, None, grid=grid)
    assert torch.all(tf.mask.sum(1) == rows * cols - int(rows * cols * 0.25))
    with pytest.raises(UsageError, match="grid"):
        TimeMasker(0.75)(tokens, None)


@pytest.mark.parametrize("masker", [TimeMasker(0.75), FreqMasker(0.5), TimeFreqMasker(0.75)])
def test_structured_masks_come_from_the_given_noise(masker):
    """The trainer passes per-step noise: the lines removed must follow it (not torch's RNG), whole
    lines must still go, and each sample's mask must depend only on its own noise row."""
    rows, cols = 8, 26
    tokens = torch.randn(4, rows * cols, 2)
    noise = torch.rand(4, rows * cols)
    first = masker(tokens, noise.clone(), grid=(rows, cols))
    torch.rand(5)
    again = masker(tokens, noise.clone(), grid=(rows, cols))
    assert torch.equal(first.mask, again.mask)
    assert torch.equal(masker(tokens[2:], noise[2:], grid=(rows, cols)).mask, first.mask[2:])
    n_rows, n_cols = masker.forced_lines(rows, cols)
    grid_mask = first.mask.reshape(4, rows, cols)
    lines = noise.reshape(4, rows, cols)
    if n_cols:
        dropped = lines[:, 0, :].argsort(1, descending=True)[:, :n_cols]
        assert torch.all(torch.gather(grid_mask, 2, dropped[:, None, :].expand(-1, rows, -1)) == 1)
    if n_rows:
        dropped = lines[:, :, 0].argsort(1, descending=True)[:, :n_rows]
        assert torch.all(torch.gather(grid_mask, 1, dropped[:, :, None].expand(-1, -1, cols)) == 1)
    # a different noise draws different lines
    other = masker(tokens, torch.rand(4, rows * cols), grid=(rows, cols))
    assert not torch.equal(other.mask, first.mask)


# -- encoder ------------------------------------------------------------------------------------------
def _loop_bug_reference(enc: CAVEncoder, a: torch.Tensor) -> torch.Tensor:
    """Upstream's per-modality pass: every joint block fed the *original* tokens (spec §10.1)."""
    for blk in enc.blocks_u:
        out = blk(a, "a")
    return enc.norm_a(out)


def test_joint_layers_chain_and_equal_upstream_at_depth_one():
    torch.manual_seed(0)
    a = torch.randn(2, 6, 16)
    one = CAVEncoder(embed_dim=16, depth=1, joint_depth=1, num_heads=2)
    x = one.stack_audio(a)
    assert torch.allclose(one.modality_pass(x, "a"), _loop_bug_reference(one, x))
    two = CAVEncoder(embed_dim=16, depth=1, joint_depth=2, num_heads=2)
    x = two.stack_audio(a)
    chained = two.norm_a(two.blocks_u[1](two.blocks_u[0](x, "a"), "a"))
    assert torch.allclose(two.modality_pass(x, "a"), chained)
    assert not torch.allclose(two.modality_pass(x, "a"), _loop_bug_reference(two, x))


def test_sdpa_and_eager_attention_agree():
    torch.manual_seed(0)
    model = build_model_node({"type": "cav_mae_sync", **TINY, **TINY_DECODER}).build().eval()
    audio, image = torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32)
    noise_a, noise_v = torch.rand(2, 32), torch.rand(2, 4)
    with torch.no_grad():
        fused = model(audio, image, noise_audio=noise_a, noise_visual=noise_v)
        set_attn_impl(model, "eager")
        eager = model(audio, image, noise_audio=noise_a, noise_visual=noise_v)
    for field in ("pred_audio", "pred_visual", "audio_global", "visual_tokens"):
        assert torch.allclose(getattr(fused, field), getattr(eager, field), atol=1e-5), field


def test_global_and_register_tokens_are_never_masked_and_registers_are_dropped():
    enc = CAVEncoder(embed_dim=16, depth=1, num_heads=2, global_tokens=True, num_register_tokens=3)
    out = enc(torch.randn(2, 5, 16), torch.randn(2, 4, 16))
    assert out.joint.shape == (2, 9, 16)  # patches only: no global, no registers
    assert out.audio.shape == (2, 5, 16) and out.audio_global.shape == (2, 16)
    assert enc.register_tokens.shape == (6, 16)


# -- classifier ---------------------------------------------------------------------------------------
def test_classifier_head_is_found_by_prefix_and_modes_need_their_inputs():
    model = build_model_node({"type": "classifier", **TINY, "num_classes": 4}).build()
    head = [n for n, _ in model.named_parameters() if n.startswith("head.")]
    assert head == ["head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias"]
    model.mode = "audioonly"
    assert model(torch.randn(2, 64, 128), None).logits.shape == (2, 4)
    with pytest.raises(UsageError, match="needs image"):
        model.features(torch.randn(2, 64, 128), None, "videoonly")


def test_incompatible_widths_are_usage_errors():
    with pytest.raises(UsageError, match="width 32 is not divisible by 12 heads"):
        build_model_node({"type": "cav_mae", "audio_length": 32, "image_size": 32, "embed_dim": 32}).build()
    with pytest.raises(UsageError, match="divisible by 4, got 18"):
        build_model_node(
            {"type": "classifier", "audio_length": 32, "image_size": 32, "embed_dim": 18, "encoder": {"num_heads": 2}}
        ).build()


def test_pretraining_forward_compiles_without_graph_breaks():
    """torch.compile sees one graph (no data-dependent Python control flow in the model)."""
    import torch._dynamo

    model = build_model_node({"type": "cav_mae_sync", **TINY, **TINY_DECODER}).build()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, [r.reason for r in explanation.break_reasons]

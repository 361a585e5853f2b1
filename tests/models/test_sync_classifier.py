"""The Sync clip classifier and its frame aggregators: shapes, what each frame feature is, which
inputs each modality reads, initialisation from a pretraining checkpoint, and a plugin aggregator."""

from __future__ import annotations

import types

import pytest
import torch

from cavkit import hookimpl
from cavkit.checkpoints.load import init_from_checkpoint
from cavkit.config import structure_node
from cavkit.errors import UsageError
from cavkit.models.aggregators import AttentionAggregator, MeanAggregator
from cavkit.plugins import get_plugin_host
from cavkit.testing import plugin_host, tiny_model


def build(host=None, **params):
    """The tiny Sync classifier with 5 classes; a part given with its ``type`` replaces the tiny one."""
    host = host or get_plugin_host()
    data = tiny_model("sync_classifier", num_classes=5, **params)
    node, problems = structure_node("model", data, registry=host.registry)
    assert not problems, problems
    torch.manual_seed(0)
    return node.build().eval()


def clips(b=3, k=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, 32, 128, generator=g), torch.randn(b, k, 3, 32, 32, generator=g)


# -- aggregators --------------------------------------------------------------------------------
def test_mean_aggregator_is_the_frame_mean():
    frames = torch.randn(2, 5, 8)
    torch.testing.assert_close(MeanAggregator(8)(frames), frames.mean(dim=1))


@pytest.mark.parametrize("k", [1, 4, 16])
def test_attention_aggregator_shapes_and_clip_independence(k):
    torch.manual_seed(0)
    agg = AttentionAggregator(24, depth=2, num_heads=4).eval()
    frames = torch.randn(3, k, 24)
    out = agg(frames)
    assert out.shape == (3, 24) and agg.out_dim == 24
    changed = frames.clone()
    changed[1] = torch.randn(k, 24)
    out2 = agg(changed)
    torch.testing.assert_close(out2[[0, 2]], out[[0, 2]])  # another clip's frames do not leak in
    assert not torch.allclose(out2[1], out[1])


def test_attention_aggregator_reads_the_frames_through_its_query():
    torch.manual_seed(0)
    agg = AttentionAggregator(16, depth=1, num_heads=2).eval()
    frames = torch.randn(2, 6, 16)
    out = agg(frames)
    # no frame-position embedding: the clip feature does not depend on the frame order
    torch.testing.assert_close(agg(frames[:, torch.randperm(6)]), out, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        agg.query.add_(1.0)
    assert not torch.allclose(agg(frames), out)


def test_attention_aggregator_width_must_divide_heads():
    with pytest.raises(UsageError, match="not divisible by 5 heads"):
        AttentionAggregator(24, num_heads=5)


# -- the classifier -----------------------------------------------------------------------------
def test_both_modalities_concatenate_the_per_frame_global_tokens():
    model = build(modality="both", frame_token="global", aggregator={"type": "mean"})
    audio, image = clips()
    with torch.no_grad():
        feats = model.frame_features(audio, image)
        assert feats.shape == (3, 4, 64)
        # frame k's feature is the global tokens of frame k encoded on its own (unmasked, as retrieval)
        one = model.embed(audio[:, 2], image[:, 2])
        torch.testing.assert_close(feats[:, 2], torch.cat([one.audio_global, one.visual_global], dim=-1))
        out = model(audio, image)
        torch.testing.assert_close(out.logits, model.head(feats.mean(dim=1)))
    assert out.logits.shape == (3, 5)


def test_pooled_frame_token_is_the_mean_patch_token():
    model = build(modality="visual", frame_token="pooled", aggregator={"type": "mean"})
    _, image = clips()
    with torch.no_grad():
        feats = model.frame_features(None, image)
        one = model.embed(None, image[:, 0])
    assert feats.shape == (3, 4, 32)
    torch.testing.assert_close(feats[:, 0], one.visual_patches.mean(dim=1))


def test_audio_modality_reads_only_audio():
    model = build(modality="audio", aggregator={"type": "attention", "depth": 1, "num_heads": 4})
    audio, image = clips()
    with torch.no_grad():
        a = model(audio, image).logits
        torch.testing.assert_close(model(audio, None).logits, a)
        torch.testing.assert_close(model(audio, image + 3.0).logits, a)
        assert not torch.allclose(model(audio + 1.0, image).logits, a)
    with pytest.raises(UsageError, match="needs audio input"):
        model(None, image)


def test_a_single_frame_item_is_a_clip_of_one_frame():
    model = build(aggregator={"type": "mean"})
    audio, image = clips(k=1)
    with torch.no_grad():
        torch.testing.assert_close(model(audio[:, 0], image[:, 0]).logits, model(audio, image).logits)


def test_mismatched_frame_counts_and_wrong_mode_are_refused():
    model = build(aggregator={"type": "mean"})
    audio, image = clips()
    with pytest.raises(UsageError, match="disagree on clips x frames"):
        model(audio, image[:, :3])
    with pytest.raises(UsageError, match="built for modality 'both'"):
        model.features(audio, image, "audio")


def test_global_frame_token_needs_global_tokens():
    with pytest.raises(UsageError, match="frame_token 'global' needs an encoder with global tokens"):
        build(encoder={"type": "cav_mae_encoder", "depth": 1, "num_heads": 2}, aggregator={"type": "mean"})
    model = build(
        encoder={"type": "cav_mae_encoder", "depth": 1, "num_heads": 2},
        frame_token="pooled",
        aggregator={"type": "mean"},
    )
    audio, image = clips()
    with torch.no_grad():
        assert model(audio, image).logits.shape == (3, 5)


def test_init_from_a_sync_pretraining_checkpoint(tmp_path):
    """Encoder and tokenizers load; the decoder is ignored; aggregator and head start fresh."""
    from safetensors.torch import save_file

    from cavkit.checkpoints.convert import model_recipe_text

    host = get_plugin_host()
    data = tiny_model("cav_mae_sync", decoder={"embed_dim": 16})  # the classifier's encoder and tokenizers
    node, problems = structure_node("model", data, registry=host.registry)
    assert not problems
    torch.manual_seed(3)
    pretrained = node.build()
    pretrained.cavkit_node = node
    path = tmp_path / "pretrained.safetensors"
    state = {k: v.contiguous() for k, v in pretrained.state_dict().items()}
    save_file(state, str(path), metadata={"format": "cavkit.model", "recipe": model_recipe_text(pretrained)})

    attention = {"type": "attention", "depth": 1, "num_heads": 4}
    model = build(aggregator=attention)
    init_from_checkpoint(model, str(path))  # trainer.init
    own = model.state_dict()
    for key in ("encoder.blocks_a.0.attn.qkv.weight", "encoder.cls_token_v", "visual_tokenizer.proj.weight"):
        torch.testing.assert_close(own[key], state[key])
    fresh = build(aggregator=attention)  # same seed, no init: what the new parts start from
    for key in ("aggregator.query", "head.1.weight"):
        torch.testing.assert_close(own[key], fresh.state_dict()[key])
    assert not torch.equal(
        own["encoder.blocks_a.0.attn.qkv.weight"], fresh.state_dict()["encoder.blocks_a.0.attn.qkv.weight"]
    )


# -- a plugin adds an aggregator ----------------------------------------------------------------
class _MaxAggregator(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.out_dim = dim

    def forward(self, frames):
        return frames.amax(dim=1)


def _build_max(config, *, dim=768):
    return _MaxAggregator(dim)


def test_a_plugin_registers_an_aggregator():
    import attrs

    @attrs.frozen(kw_only=True)
    class MaxConfig:
        """Max over frames."""

    plugin = types.ModuleType("max_aggregator_plugin")

    @hookimpl
    def cavkit_register_components(registry):
        registry.add("aggregator", "frame_max", _build_max, MaxConfig, summary="max over frames")

    plugin.cavkit_register_components = cavkit_register_components
    host = plugin_host(plugin)
    assert "frame_max" in host.registry.names("aggregator")
    model = build(host, aggregator={"type": "frame_max"})
    audio, image = clips()
    with torch.no_grad():
        feats = model.frame_features(audio, image)
        torch.testing.assert_close(model(audio, image).logits, model.head(feats.amax(dim=1)))

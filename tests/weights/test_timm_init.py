"""ImageNet-MAE initialisation from a timm ViT (spec §4.7), offline: timm models built with
pretrained=False and saved locally; every mapped tensor must equal its source."""

from __future__ import annotations

import pytest
import torch

from cavkit.checkpoints.build import build_model_node
from cavkit.checkpoints.load import init_from_checkpoint
from cavkit.checkpoints.timm_init import describe_fresh
from cavkit.errors import CheckpointError

timm = pytest.importorskip("timm")


def _saved_vit(tmp_path, name):
    torch.manual_seed(3)
    vit = timm.create_model(name, pretrained=False)
    state = {k: v.detach().clone() for k, v in vit.state_dict().items()}
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path, state


def _check_mapping(model, vit, specific, joint):
    own = model.state_dict()
    for i in range(specific):
        for stack in ("blocks_a", "blocks_v"):
            for part in (
                "norm1.weight",
                "attn.qkv.weight",
                "attn.proj.bias",
                "norm2.bias",
                "mlp.fc1.weight",
                "mlp.fc2.bias",
            ):
                assert torch.equal(own[f"encoder.{stack}.{i}.{part}"], vit[f"blocks.{i}.{part}"]), (stack, i, part)
    for j in range(joint):
        src = f"blocks.{specific + j}"
        for part in ("attn.qkv.weight", "attn.qkv.bias", "mlp.fc2.weight"):
            assert torch.equal(own[f"encoder.blocks_u.{j}.{part}"], vit[f"{src}.{part}"])
        for norm in ("norm1", "norm2"):
            for suffix in ("", "_a", "_v"):
                for p in ("weight", "bias"):
                    assert torch.equal(own[f"encoder.blocks_u.{j}.{norm}{suffix}.{p}"], vit[f"{src}.{norm}.{p}"])
    for norm in ("norm", "norm_a", "norm_v"):
        assert torch.equal(own[f"encoder.{norm}.weight"], vit["norm.weight"])
        assert torch.equal(own[f"encoder.{norm}.bias"], vit["norm.bias"])
    assert torch.equal(own["visual_tokenizer.proj.weight"], vit["patch_embed.proj.weight"])
    assert torch.equal(own["visual_tokenizer.proj.bias"], vit["patch_embed.proj.bias"])
    assert torch.equal(own["audio_tokenizer.proj.weight"], vit["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(own["audio_tokenizer.proj.bias"], vit["patch_embed.proj.bias"])
    assert torch.equal(own["visual_tokenizer.pos_embed"], vit["pos_embed"][:, 1:])


def test_cav_mae_from_a_small_vit_maps_every_tensor_and_reports_the_fresh_parts(tmp_path):
    path, vit = _saved_vit(tmp_path, "vit_tiny_patch16_224")  # 12 blocks, width 192, 3 heads
    node = {
        "type": "cav_mae",
        "audio_length": 64,
        "embed_dim": 192,
        "encoder": {"depth": 10, "joint_depth": 2, "num_heads": 3},
        "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
    }
    torch.manual_seed(0)
    model = build_model_node(node).build()
    fresh_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("decoder.")}
    audio_pos_before = model.state_dict()["audio_tokenizer.pos_embed"].clone()
    report = init_from_checkpoint(model, f"timm:vit_tiny_patch16_224={path}")
    _check_mapping(model, vit, specific=10, joint=2)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in fresh_before.items())  # decoder untouched
    assert torch.equal(own["audio_tokenizer.pos_embed"], audio_pos_before)
    assert set(report["loaded"]).isdisjoint(report["fresh"])
    assert set(report["loaded"]) | set(report["fresh"]) == set(own)
    assert "encoder.blocks_a.0.norm1_a.weight" in report["fresh"]  # unused modality norms of the stacks
    assert report["ignored"] == ["cls_token"]
    groups = describe_fresh(report["fresh"])
    assert "the MAE decoder (timm checkpoints have none)" in groups and "modality embeddings" in groups


def test_sync_model_from_the_vit_b_mae_config_through_init(tmp_path, capsys):
    """The published shape: ViT-B/16 (MAE variant name) into the released Sync configuration (11 + 1)."""
    path, vit = _saved_vit(tmp_path, "vit_base_patch16_224.mae")
    model = build_model_node({"type": "cav_mae_sync", "audio_length": 416}).build()
    init_from_checkpoint(model, f"timm:vit_base_patch16_224.mae={path}")  # what trainer.init does
    _check_mapping(model, vit, specific=11, joint=1)
    message = capsys.readouterr().err
    assert "freshly initialised:" in message and "register tokens" in message and "global tokens" in message


def test_depth_or_width_that_does_not_fit_is_one_clear_error(tmp_path):
    path, _ = _saved_vit(tmp_path, "vit_tiny_patch16_224")
    small = build_model_node(
        {
            "type": "cav_mae",
            "audio_length": 64,
            "embed_dim": 192,
            "encoder": {"depth": 3, "num_heads": 3},
            "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
        }
    ).build()
    with pytest.raises(CheckpointError, match=r"the ViT has 12 blocks, the model needs 3 modality-specific \+ 1 joint"):
        init_from_checkpoint(small, f"timm:vit_tiny_patch16_224={path}")
    wide = build_model_node(
        {
            "type": "cav_mae",
            "audio_length": 64,
            "embed_dim": 64,
            "encoder": {"depth": 11, "num_heads": 2},
            "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
        }
    ).build()
    with pytest.raises(
        CheckpointError, match=r"(?s)does not fit the model.*qkv.weight: ViT \[576, 192\].*model \[192, 64\]"
    ):
        init_from_checkpoint(wide, f"timm:vit_tiny_patch16_224={path}")
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        init_from_checkpoint(small, f"timm:vit_tiny_patch16_224={tmp_path / 'nope.pth'}")

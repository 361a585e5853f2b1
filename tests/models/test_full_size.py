"""Full-size configurations have the published parameter and key counts (spec §4.3-§4.5), built on the meta device."""

from __future__ import annotations

import pytest
import torch

from cavkit.checkpoints.build import build_model_node


def _counts(node_data):
    with torch.device("meta"):
        model = build_model_node(node_data).build()
    params = list(model.parameters())
    return (
        len(model.state_dict()),
        sum(p.numel() for p in params),
        sum(p.numel() for p in params if p.requires_grad),
        model,
    )


def test_cav_mae_full_size():
    keys, total, trainable, _ = _counts({"type": "cav_mae"})
    assert (keys, total, trainable) == (647, 191_036_160, 190_129_920)


def test_cav_mae_sync_full_size():
    keys, total, trainable, model = _counts({"type": "cav_mae_sync"})
    assert (keys, total, trainable) == (650, 190_660_864, 190_143_744)
    assert tuple(model.audio_tokenizer.pos_embed.shape) == (1, 208, 768)
    assert tuple(model.encoder.register_tokens.shape) == (16, 768)


@pytest.mark.parametrize("classes,expected", [(527, 164_907_023), (309, 164_739_381)])
def test_classifier_full_size(classes, expected):
    keys, total, trainable, _ = _counts({"type": "classifier", "num_classes": classes})
    assert (keys, total, trainable) == (478, expected, expected)  # tr_pos=True: all trainable


def test_sync_with_contrastive_heads_adds_four_blocks():
    keys, total, _, _ = _counts({"type": "cav_mae_sync", "encoder": {"contrastive_head_depth": 2}})
    assert keys == 650 + 4 * 20 and total == 190_660_864 + 4 * 7_094_016


def test_full_size_upstream_key_names_match_the_spec():
    from cavkit.checkpoints.keys import cavkit_to_upstream

    _, _, _, model = _counts({"type": "cav_mae_sync"})
    names = {cavkit_to_upstream(k) for k in model.state_dict()}
    for key in (
        "pos_embed_a",
        "decoder_pos_embed_a",
        "register_tokens",
        "cls_token_a",
        "cls_token_v",
        "patch_embed_a.proj.weight",
        "blocks_u.0.norm1_a.weight",
        "decoder_pred_v.bias",
        "mask_token",
    ):
        assert key in names

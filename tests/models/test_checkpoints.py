"""Checkpoint loading, conversion and the errors users see for bad files and inputs."""

from __future__ import annotations

import pickle

import pytest
import torch
from model_helpers import TINY_HEADS, fixture_tensors

from cavkit.checkpoints.build import build_model_node
from cavkit.checkpoints.convert import convert, upstream_state_dict
from cavkit.checkpoints.load import init_from_checkpoint, load_model
from cavkit.checkpoints.read import read_checkpoint
from cavkit.errors import CheckpointError, UsageError
from cavkit.testing import run_cli, tiny_model

HEAD_ARGS = ["--set", "encoder.num_heads=2", "--set", "decoder.num_heads=2"]
#: upstream state-dict order (spec §4.1): the model's own parameters, then its sub-modules in the order
#: upstream's __init__ registers them (Sync: the contrastive heads between blocks_u and the norms)
UPSTREAM_ORDER = [
    "modality_a", "modality_v", "pos_embed_a", "pos_embed_v", "register_tokens", "mask_token", "decoder_modality_a",
    "decoder_modality_v", "decoder_pos_embed_a", "decoder_pos_embed_v", "cls_token_a", "cls_token_v",
    "patch_embed_a", "patch_embed_v", "blocks_a", "blocks_v", "blocks_u", "constrative_head_audio",
    "constrative_head_visual", "norm_a", "norm_v", "norm", "decoder_embed", "decoder_blocks", "decoder_norm",
    "decoder_pred_a", "decoder_pred_v", "mlp_head",
]


def _module_order(state) -> list[str]:
    """First-level upstream names in the order the keys come."""
    seen: list[str] = []
    for k in state:
        top = k.removeprefix("module.").split(".")[0]
        if top not in seen:
            seen.append(top)
    return seen


@pytest.mark.parametrize("name", ["cavmae_tiny", "sync_tiny", "sync_tiny_heads_nocls", "cavmae_ft_tiny"])
def test_official_to_cavkit_to_upstream_round_trip(name, official_file, tmp_path):
    path, tensors = official_file(name)
    args = HEAD_ARGS if "ft" not in name else HEAD_ARGS[:2]
    result = run_cli(["convert", str(path), str(tmp_path / "m.safetensors"), *args])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "m.yaml").exists()
    # the cavkit file rebuilds the model on its own (recipe in its metadata), no overrides needed
    model = load_model(str(tmp_path / "m.safetensors"))
    assert read_checkpoint(str(tmp_path / "m.safetensors")).layout == "cavkit"
    result = run_cli(["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "back.pth")])
    assert result.exit_code == 0, result.stderr
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    original = {k: v for k, v in tensors.items() if k.startswith("module.")}
    assert _module_order(back) == [m for m in UPSTREAM_ORDER if any(k.startswith(f"module.{m}.") or k == f"module.{m}"
                                                                    for k in original)]
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    assert all(k.startswith("module.") for k in back)
    assert len(upstream_state_dict(model)) == len(original)


def test_bare_keys_without_module_prefix_load(tmp_path):
    tensors = fixture_tensors("sync_tiny")
    bare = {k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")}
    torch.save(bare, tmp_path / "bare.pth")
    model = load_model(str(tmp_path / "bare.pth"), overrides=TINY_HEADS, expect="cav_mae_sync")
    assert model.encoder.register_tokens.shape == (16, 32)


def test_a_checkpoint_of_the_wrong_model_is_refused(official_file):
    path, _ = official_file("cavmae_tiny")
    with pytest.raises(CheckpointError, match="holds a 'cav_mae' model, expected 'cav_mae_sync'"):
        load_model(str(path), overrides=TINY_HEADS, expect="cav_mae_sync")


def test_truncated_file(official_file, tmp_path):
    path, _ = official_file("cavmae_ft_tiny")
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(str(cut))
    result = run_cli(["convert", str(cut), str(tmp_path / "x.safetensors")])
    assert result.exit_code == 2 and "truncated" in result.stderr and "Traceback" not in result.stderr


def test_truncated_safetensors(official_file, tmp_path):
    path, _ = official_file("cavmae_ft_tiny")
    convert(str(path), str(tmp_path / "m.safetensors"), overrides=["encoder.num_heads=2"])
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt safetensors"):
        load_model(str(tmp_path / "cut.safetensors"))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"this is a text file, not weights\n", "not a PyTorch checkpoint or safetensors file"),
        (b"", "empty"),
    ],
)
def test_non_checkpoint_files(tmp_path, content, match):
    bad = tmp_path / "notes.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_model(str(bad))


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_files_that_would_run_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(str(path))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_model(str(tmp_path / "evil.pkl"))


def test_foreign_state_dicts_and_missing_files(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a CAV-MAE / CAV-MAE Sync checkpoint.*fc.weight"):
        load_model(str(tmp_path / "other.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict of named tensors"):
        load_model(str(tmp_path / "list.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        load_model(str(tmp_path / "nope.pth"))


def test_strict_load_names_missing_unexpected_and_misshaped_keys(tmp_path):
    tensors = {k: v for k, v in fixture_tensors("sync_tiny").items() if k.startswith("module.")}
    tensors.pop("module.blocks_v.3.mlp.fc2.bias")
    tensors["module.decoder_blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    torch.save(tensors, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(str(tmp_path / "broken.pth"), overrides=TINY_HEADS)
    text = str(info.value)
    assert "missing (1): blocks_v.3.mlp.fc2.bias" in text
    assert "mis-shaped decoder_blocks.0.attn.qkv.weight: checkpoint [3, 3], model [96, 32]" in text
    tensors = {k: v for k, v in fixture_tensors("cavmae_ft_tiny").items() if k.startswith("module.")}
    tensors["module.blocks_q.0.weight"] = torch.zeros(1)
    torch.save(tensors, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected keys.*blocks_q.0.weight"):
        load_model(str(tmp_path / "extra.pth"), overrides={"encoder": {"num_heads": 2}})


def test_head_counts_that_cannot_be_inferred_must_be_given(official_file):
    path, _ = official_file("sync_tiny")
    with pytest.raises(
        CheckpointError, match="cannot infer the attention heads of the 32-wide encoder.*encoder.num_heads"
    ):
        load_model(str(path))


def test_input_length_other_than_the_checkpoint_is_a_clear_error(official_file):
    path, tensors = official_file("cavmae_ft_tiny")
    model = load_model(str(path), overrides={"encoder": {"num_heads": 2}})
    with pytest.raises(UsageError, match=r"expected \[B, 1024, 128\].*audio_length=1024"):
        model(torch.randn(1, 1000, 128), tensors["input.image"][:1])


def test_classifier_initialised_from_a_pretraining_checkpoint(official_file):
    path, tensors = official_file("cavmae_tiny")
    model = build_model_node({"type": "classifier", "num_classes": 7, "embed_dim": 32, "encoder": {"num_heads": 2}}).build()
    report = init_from_checkpoint(model, str(path))  # what trainer.init does
    assert {k.split(".")[0] for k in report["fresh"]} == {"head"} and report["ignored"]
    pre = load_model(str(path), overrides=TINY_HEADS)
    assert torch.equal(model.encoder.blocks_u[0].attn.qkv.weight, pre.encoder.blocks_u[0].attn.qkv.weight)
    assert torch.equal(model.audio_tokenizer.pos_embed, pre.audio_tokenizer.pos_embed)
    assert model.audio_tokenizer.pos_embed.requires_grad  # fine-tuning trains positions (tr_pos=True)
    with torch.no_grad():
        emb, ref = model.embed(tensors["input.audio"], None), pre.embed(tensors["input.audio"], None)
    assert torch.allclose(emb.audio_patches, ref.audio_patches)


def test_sync_initialised_from_a_1024_frame_checkpoint_keeps_fresh_audio_positions(official_file):
    path, _ = official_file("cavmae_tiny")
    model = build_model_node(
        {
            "type": "cav_mae_sync",
            "embed_dim": 32,
            "audio_length": 96,
            "encoder": {"num_heads": 2, "num_register_tokens": 0, "global_tokens": False},
            "decoder": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        }
    ).build()
    report = init_from_checkpoint(model, str(path))
    assert "audio_tokenizer.pos_embed" in report["fresh"] and "decoder.pos_embed_a" in report["fresh"]
    assert "encoder.blocks_a.0.attn.qkv.weight" in report["loaded"]
    wrong = build_model_node(
        {
            "type": "cav_mae",
            "embed_dim": 32,
            "encoder": {"depth": 2, "num_heads": 2},
            "decoder": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        }
    ).build()
    with pytest.raises(CheckpointError, match="unexpected blocks_a.2"):
        init_from_checkpoint(wrong, str(path))


def _tiny_sync_node(**fields) -> dict:
    """A tiny Sync model with 96-frame segments and the default 8 registers per modality."""
    return tiny_model("cav_mae_sync", audio_length=96, encoder={"num_register_tokens": 8}, **fields)


def _tiny_sync():
    return build_model_node(_tiny_sync_node()).build()


def test_training_run_weights_and_checkpoints_load(tmp_path):
    """Weights as the trainer writes them: safetensors whose metadata holds the whole resolved recipe."""
    import yaml
    from safetensors.torch import save_file

    model = _tiny_sync()
    recipe = {
        "cavkit": 1,
        "model": _tiny_sync_node(init=str(tmp_path / "gone.pth")),
        "objectives": [{"type": "mae"}],
    }
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, tmp_path / "final.safetensors", metadata={"step": "3", "recipe": yaml.safe_dump(recipe)})
    loaded = load_model(str(tmp_path / "final.safetensors"), expect="cav_mae_sync")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in weights.items())
    torch.save(
        {"format": "cavkit.checkpoint", "version": 1, "model": weights, "recipe": yaml.safe_dump(recipe)},
        tmp_path / "step-00000003.pt",
    )
    again = load_model(str(tmp_path / "step-00000003.pt"))
    assert torch.equal(again.encoder.cls_token_a, model.encoder.cls_token_a)
    # and exports to the upstream layout
    assert convert(str(tmp_path / "final.safetensors"), str(tmp_path / "up.pth")) == [str(tmp_path / "up.pth")]
    up = torch.load(tmp_path / "up.pth", weights_only=True)
    assert torch.equal(up["module.register_tokens"], model.encoder.register_tokens)


def test_cavkit_weights_without_a_recipe_are_inferred_from_keys(tmp_path):
    from safetensors.torch import save_file

    model = _tiny_sync()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    loaded = load_model(str(tmp_path / "w.safetensors"), overrides=TINY_HEADS)
    assert loaded.audio_tokenizer.audio_length == 96 and loaded.encoder.num_register_tokens == 8


def test_conversion_through_fsspec_uris(official_file):
    import uuid

    import fsspec

    path, _ = official_file("cavmae_ft_tiny")
    root = f"memory:///convert-{uuid.uuid4().hex}"
    with fsspec.open(f"{root}/ft.pth", "wb") as fh:
        fh.write(path.read_bytes())
    written = convert(f"{root}/ft.pth", f"{root}/out/ft.safetensors", overrides=["encoder.num_heads=2"])
    assert written == [f"{root}/out/ft.safetensors", f"{root}/out/ft.yaml"]
    model = load_model(f"{root}/out/ft.safetensors", expect="classifier")
    assert model.head[1].out_features == 5
    fs = fsspec.filesystem("memory")
    assert not [p for p in fs.ls(root.replace("memory://", "") + "/out", detail=False) if p.endswith(".tmp")]

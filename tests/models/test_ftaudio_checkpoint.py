"""The 252-key audio-only ``CAVMAEFTAudio`` checkpoints (spec §3.2, §4.4): recognised, loaded
strictly, classified, converted to cavkit's format and back, evaluated by ``cavkit eval classify``.

The state dicts are synthetic, written from the spec's key list (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cavkit.checkpoints import keys as K
from cavkit.checkpoints.build import build_model_node
from cavkit.checkpoints.convert import upstream_state_dict
from cavkit.checkpoints.load import init_from_checkpoint, load_model
from cavkit.testing import run_cli

REFERENCE_DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "reference" / "data").resolve()


def _block_keys(prefix: str, d: int) -> list[tuple[str, tuple[int, ...]]]:
    """The 20 keys of one block in state-dict order (spec §4.2)."""
    norms = lambda names: [(f"{prefix}.{n}.{p}", (d,)) for n in names for p in ("weight", "bias")]
    return [
        *norms(("norm1", "norm1_a", "norm1_v")),
        (f"{prefix}.attn.qkv.weight", (3 * d, d)),
        (f"{prefix}.attn.qkv.bias", (3 * d,)),
        (f"{prefix}.attn.proj.weight", (d, d)),
        (f"{prefix}.attn.proj.bias", (d,)),
        *norms(("norm2", "norm2_a", "norm2_v")),
        (f"{prefix}.mlp.fc1.weight", (4 * d, d)),
        (f"{prefix}.mlp.fc1.bias", (4 * d,)),
        (f"{prefix}.mlp.fc2.weight", (d, 4 * d)),
        (f"{prefix}.mlp.fc2.bias", (d,)),
    ]


def ftaudio_layout(d=768, depth=11, classes=527, audio_patches=512) -> list[tuple[str, tuple[int, ...]]]:
    """``CAVMAEFTAudio`` keys and shapes in upstream order: own parameters, then sub-modules (spec §3.2, §4.1)."""
    keys = [
        ("modality_a", (1, 1, d)),
        ("pos_embed_a", (1, audio_patches, d)),
        ("patch_embed_a.proj.weight", (d, 1, 16, 16)),
        ("patch_embed_a.proj.bias", (d,)),
    ]
    for i in range(depth):
        keys += _block_keys(f"blocks_a.{i}", d)
    keys += _block_keys("blocks_u.0", d)
    keys += [(f"{n}.{p}", (d,)) for n in ("norm_a", "norm") for p in ("weight", "bias")]
    keys += [("mlp_head.0.weight", (d,)), ("mlp_head.0.bias", (d,)), ("mlp_head.1.weight", (classes, d))]
    keys += [("mlp_head.1.bias", (classes,))]
    return keys


def write_ftaudio(path: Path, *, d=64, depth=2, classes=2, audio_patches=32, seed=0) -> dict[str, torch.Tensor]:
    """A synthetic ``module.``-prefixed CAVMAEFTAudio checkpoint (tiny sizes); returns its bare state."""
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.05 * torch.randn(shape, generator=g) for k, shape in ftaudio_layout(d, depth, classes, audio_patches)}
    torch.save({K.DATAPARALLEL_PREFIX + k: v for k, v in state.items()}, path)
    return state


def test_the_published_size_model_has_exactly_the_252_spec_keys():
    model_keys = ftaudio_layout()
    assert len(model_keys) == 252
    with torch.device("meta"):
        model = build_model_node({"type": "audio_classifier"}).build()
    ours = sorted(
        ((K.cavkit_to_upstream(k), tuple(v.shape)) for k, v in model.state_dict().items()),
        key=lambda kv: K.upstream_order(kv[0]),
    )
    assert ours == model_keys  # names, shapes and upstream order


def test_load_classify_and_convert_both_ways(tmp_path):
    src = tmp_path / "ftaudio.pth"
    state = write_ftaudio(src)
    model = load_model(str(src))
    assert type(model).__name__ == "AudioClassifier"
    node = model.cavkit_node.config
    assert (node.num_classes, node.audio_length, node.embed_dim, node.encoder.depth) == (2, 64, 64, 2)

    # the forward is the CAV-MAE classifier's audio-only mode: same logits from a full classifier
    # holding the same audio weights (its visual weights are random and unused)
    full_node = build_model_node(
        {
            "type": "classifier",
            "num_classes": 2,
            "mode": "audioonly",
            "audio_length": 64,
            "image_size": 32,
            "embed_dim": 64,
            "encoder": {"depth": 2, "num_heads": 1},
        }
    )
    full = full_node.build().eval()
    full.load_state_dict(model.state_dict(), strict=False)
    audio = torch.randn(3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(audio).logits
        torch.testing.assert_close(logits, full(audio, None).logits)
    assert logits.shape == (3, 2)

    # official -> cavkit -> official: the same tensors under the same keys in the same order
    result = run_cli(["convert", str(src), str(tmp_path / "ftaudio.safetensors")])
    assert result.exit_code == 0, result.stderr
    result = run_cli(["convert", str(tmp_path / "ftaudio.safetensors"), str(tmp_path / "back.pth")])
    assert result.exit_code == 0, result.stderr
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == [K.DATAPARALLEL_PREFIX + k for k in state]
    for k, v in state.items():
        assert torch.equal(back[K.DATAPARALLEL_PREFIX + k], v), k
    converted = load_model(str(tmp_path / "ftaudio.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(converted(audio).logits, logits)


def test_init_from_a_full_classifier_skips_the_visual_side(tmp_path):
    full_node = build_model_node(
        {
            "type": "classifier",
            "num_classes": 2,
            "audio_length": 64,
            "image_size": 32,
            "embed_dim": 64,
            "encoder": {"depth": 2, "num_heads": 1},
        }
    )
    full = full_node.build()
    torch.save(upstream_state_dict(full), tmp_path / "full.pth")
    model = build_model_node(
        {
            "type": "audio_classifier",
            "num_classes": 2,
            "audio_length": 64,
            "embed_dim": 64,
            "encoder": {"depth": 2, "num_heads": 1},
        }
    ).build()
    init_from_checkpoint(model, str(tmp_path / "full.pth"))  # trainer.init
    own, theirs = model.state_dict(), full.state_dict()
    assert set(own) < set(theirs)
    for k, v in own.items():
        torch.testing.assert_close(v, theirs[k])
    torch.save(upstream_state_dict(model), tmp_path / "audio.pth")
    assert len(torch.load(tmp_path / "audio.pth", weights_only=True)) == len(ftaudio_layout(64, 2, 2, 32))


def test_eval_classify_an_audio_only_checkpoint(tmp_path):
    if not (REFERENCE_DATA / "data.json").exists():
        pytest.skip(f"reference clips not found at {REFERENCE_DATA}")
    src = tmp_path / "ftaudio.pth"
    write_ftaudio(src)
    out = tmp_path / "metrics.json"
    args = [
        "eval",
        "classify",
        "--checkpoint",
        str(src),
        "--datafile",
        str(REFERENCE_DATA / "data.json"),
        "--dataset-type",
        "cav_mae",
        "--data",
        f"label_csv={REFERENCE_DATA / 'labels.csv'}",
        "--data",
        "target_length=64",
        "--json",
        str(out),
    ]
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr
    assert "audioonly" in result.stdout
    metrics = json.loads(out.read_text())["modes"]["audioonly"]
    assert metrics["samples"] == 3
    # the same numbers from the loaded model run by hand on the same clips
    from cavkit.data.configs import CavMaeDataConfig
    from cavkit.data.datasets import CavMaeDataset
    from cavkit.evaluation.classification import classification_metrics

    dataset = CavMaeDataset(
        CavMaeDataConfig(
            datafile=str(REFERENCE_DATA / "data.json"),
            label_csv=str(REFERENCE_DATA / "labels.csv"),
            mode="eval",
            target_length=64,
        )
    )
    model = load_model(str(src))
    items = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        logits = model(torch.stack([it["audio"] for it in items])).logits
    expected = classification_metrics(torch.sigmoid(logits), torch.stack([it["label"] for it in items]))
    assert metrics["mAP"] == pytest.approx(expected["mAP"])
    assert metrics["mAUC"] == pytest.approx(expected["mAUC"], nan_ok=True)

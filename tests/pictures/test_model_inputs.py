"""A model's declared inputs (InputSpec) choose the dataset for a bare --datafile: no name checks.

A throw-away plugin model (its name says nothing about Sync) declares per-frame segments or whole
clips; `cavkit eval retrieval` and `cavkit embed` must read the same datafile accordingly. The two
built-in datasets take different parameters (segment_length vs target_length), so a wrong choice
fails loudly instead of passing by accident.
"""

from __future__ import annotations

import attrs
import pytest
import torch
from pictures_helpers import write_clips

from cavkit import hookimpl
from cavkit.checkpoints.build import build_model_node
from cavkit.config import param
from cavkit.errors import CheckpointError
from cavkit.interfaces import Embeddings
from cavkit.models.inputs import InputSpec, derive_input_spec, input_spec_of
from cavkit.testing import plugin_host, run_cli, save_model_weights, tiny_model


@attrs.frozen(kw_only=True)
class PoolerConfig:
    layout: str = param("frame_segments", help="declared input layout")
    audio_length: int = param(32, help="fbank rows per input")


class FramePooler(torch.nn.Module):
    """Mean-pools audio rows and image pixels, then projects them (parameter names in cavkit layout)."""

    def __init__(self, config: PoolerConfig):
        super().__init__()
        self.input_spec = InputSpec(layout=config.layout, audio_length=config.audio_length, image_size=32)
        self.encoder = torch.nn.ModuleDict({"audio": torch.nn.Linear(128, 8), "visual": torch.nn.Linear(3, 8)})

    def embed(self, audio, image):
        return Embeddings(
            audio_pooled=self.encoder["audio"](audio.mean(dim=1)),
            visual_pooled=self.encoder["visual"](image.mean(dim=(2, 3))),
        )


class PoolerPlugin:
    @hookimpl
    def cavkit_register_components(self, registry):
        registry.add("model", "frame_pooler", FramePooler, PoolerConfig)


@pytest.mark.parametrize(
    ("layout", "data", "frames"),
    [
        ("frame_segments", ["segment_length=32", "image_size=32", "num_frames=4"], 4),
        ("clip", ["target_length=64", "image_size=32", "num_frames=4"], 1),
    ],
)
def test_a_plugin_model_declaring_its_inputs_gets_the_matching_dataset(tmp_path, layout, data, frames):
    from cavkit.evaluation.features import Features
    from cavkit.pictures.export import read_embeddings

    host = plugin_host(PoolerPlugin())
    checkpoint = save_model_weights(
        {"type": "frame_pooler", "layout": layout}, tmp_path / f"{layout}.safetensors", host=host
    )
    datafile = write_clips(tmp_path)
    data_args = [f"--data={item}" for item in data]
    feats = tmp_path / "feats.safetensors"
    result = run_cli(
        ["eval", "retrieval", "--checkpoint", checkpoint, "--datafile", datafile, *data_args]
        + ["--save-features", str(feats)],
        host=host,
    )
    assert result.exit_code == 0, result.stderr
    assert Features.load(str(feats)).audio.shape == (3, frames, 8)
    out = tmp_path / "emb.npz"
    result = run_cli(
        ["embed", "--checkpoint", checkpoint, "--datafile", datafile, *data_args, "--out", str(out)], host=host
    )
    assert result.exit_code == 0, result.stderr
    arrays, ids = read_embeddings(str(out))
    assert ids == ["vid0", "vid1", "vid2"]
    assert arrays["audio_pooled"].shape == ((3, frames, 8) if frames > 1 else (3, 8))


def test_the_checkpoint_stores_the_declaration_and_old_files_derive_it(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from cavkit.checkpoints.load import load_model

    host = plugin_host(PoolerPlugin())
    checkpoint = save_model_weights(
        {"type": "frame_pooler", "layout": "frame_segments"}, tmp_path / "frame_segments.safetensors", host=host
    )
    with safe_open(checkpoint, "pt") as fh:
        meta = fh.metadata()
    assert InputSpec.from_json(meta["inputs"]) == InputSpec(layout="frame_segments", audio_length=32, image_size=32)

    # a built-in Sync model saved before declarations were stored: derived from its config
    sync = tiny_model("cav_mae_sync", embed_dim=16, encoder={"num_register_tokens": 8}, decoder={"embed_dim": 16})
    expected = InputSpec(layout="frame_segments", audio_length=32, image_size=32, global_tokens=True)
    assert derive_input_spec(build_model_node(sync, host=host)) == expected
    new = save_model_weights(sync, tmp_path / "new.safetensors", host=host)
    with safe_open(new, "pt") as fh:
        new_meta = fh.metadata()
    assert InputSpec.from_json(new_meta["inputs"]) == expected
    old = tmp_path / "old.safetensors"
    save_file(
        load_file(new),
        str(old),
        metadata={"format": "cavkit.model", "recipe": new_meta["recipe"]},
    )
    loaded = load_model(str(old), host=host)
    assert not hasattr(loaded, "input_spec") and input_spec_of(loaded) == expected

    bad = tmp_path / "bad.safetensors"
    save_file(load_file(checkpoint), str(bad), metadata={**meta, "inputs": '{"layout": "sideways"}'})
    with pytest.raises(CheckpointError, match="stored input declaration"):
        load_model(str(bad), host=host)


def test_training_writes_the_declaration_into_its_weights(tiny_weights):
    from safetensors import safe_open

    with safe_open(tiny_weights, "pt") as fh:
        stored = InputSpec.from_json(fh.metadata()["inputs"])
    assert stored == InputSpec(layout="frame_segments", audio_length=32, image_size=32, global_tokens=True)

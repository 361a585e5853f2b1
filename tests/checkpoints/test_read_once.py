"""Every command that takes a checkpoint reads the file once: ``cavkit convert``, ``inpaint``,
``localize`` and ``embed`` on tiny models kept on ``memory://``, where every read of the file's
bytes goes through :class:`fsspec.implementations.memory.MemoryFileSystem` and is counted."""

from __future__ import annotations

import io
import uuid

import pytest
import torch

from cavkit.testing import run_cli, save_model_weights, tiny_model

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

#: a tiny CAV-MAE Sync model (head counts are not recorded by official files: --set gives them)
SYNC = tiny_model("cav_mae_sync")
HEADS = ["--set", "encoder.num_heads=2", "--set", "decoder.num_heads=2"]
#: the tiny model's clips: 4 frames of 32x32 and 32 fbank frames each (the test split of `synthetic`)
CLIPS = ["--dataset-type", "synthetic"] + [
    f"--data={k}={v}"
    for k, v in {
        "layout": "sync",
        "split": "test",
        "num_clips": 2,
        "image_size": 32,
        "audio_length": 128,
        "segment_length": 32,
        "num_frames": 4,
    }.items()
]


@pytest.fixture
def root():
    """A fresh ``memory://`` folder, removed after the test."""
    import fsspec

    folder = f"memory:///read-once-{uuid.uuid4().hex}"
    yield folder
    fs = fsspec.filesystem("memory")
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


@pytest.fixture
def reads(monkeypatch):
    """``reads(uri)``: how often the ``memory://`` file ``uri`` has been read (opened for reading or
    fetched whole) since the test began."""
    from fsspec.implementations.memory import MemoryFileSystem

    seen: list[str] = []
    real_open, real_cat = MemoryFileSystem._open, MemoryFileSystem.cat_file

    def counting_open(self, path, mode="rb", *args, **kwargs):
        if "r" in mode:
            seen.append(self._strip_protocol(path))
        return real_open(self, path, mode, *args, **kwargs)

    def counting_cat(self, path, *args, **kwargs):
        seen.append(self._strip_protocol(path))
        return real_cat(self, path, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "_open", counting_open)
    monkeypatch.setattr(MemoryFileSystem, "cat_file", counting_cat)
    return lambda uri: seen.count(MemoryFileSystem._strip_protocol(uri))


def _ok(args):
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr[-3000:]
    return result


def _pixel_weights(uri: str) -> str:
    """Weights whose stored recipe, like a training run's, says ``mae`` with ``norm_pix_loss: false``."""
    from cavkit.checkpoints.build import build_model_node
    from cavkit.checkpoints.convert import CAVKIT_FORMAT, model_recipe_text
    from cavkit.engine.checkpoint import save_weights
    from cavkit.models.inputs import input_metadata

    node = build_model_node(SYNC)
    torch.manual_seed(0)
    model = node.build()
    model.cavkit_node = node
    recipe = model_recipe_text(model) + "objectives:\n- {type: mae, norm_pix_loss: false}\n"
    save_weights(model.state_dict(), uri, {"format": CAVKIT_FORMAT, "recipe": recipe, **input_metadata(model)})
    return uri


def test_convert_to_upstream_reads_the_checkpoint_once(root, reads, tmp_path):
    from cavkit.checkpoints.convert import upstream_state_dict
    from cavkit.checkpoints.load import load_model

    src = save_model_weights(SYNC, f"{root}/m.safetensors")
    _ok(["convert", src, str(tmp_path / "back.pth")])
    assert reads(src) == 1
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    expected = upstream_state_dict(load_model(src))
    assert list(back) == list(expected) and all(torch.equal(back[k], expected[k]) for k in expected)


def test_convert_of_an_official_file_reads_it_once(root, reads, tmp_path):
    import fsspec

    from cavkit.checkpoints.convert import upstream_state_dict
    from cavkit.checkpoints.load import load_model

    official = upstream_state_dict(load_model(save_model_weights(SYNC, tmp_path / "m.safetensors")))
    buffer = io.BytesIO()
    torch.save(official, buffer)
    src = f"{root}/official.pth"
    with fsspec.open(src, "wb") as fh:
        fh.write(buffer.getvalue())
    _ok(["convert", src, str(tmp_path / "c.safetensors"), *HEADS])
    assert reads(src) == 1
    converted = upstream_state_dict(load_model(str(tmp_path / "c.safetensors")))
    assert all(torch.equal(converted[k], official[k]) for k in official) and set(converted) == set(official)


def test_inpaint_reads_the_checkpoint_once(root, reads, tmp_path):
    src = _pixel_weights(f"{root}/run.safetensors")
    out = tmp_path / "inpaint"
    result = _ok(["inpaint", "--checkpoint", src, *CLIPS, "--num-clips", "1", "--out", str(out)])
    assert reads(src) == 1
    assert "pixel targets: recipe: mae objective with norm_pix_loss false" in result.stderr
    assert [p.name for p in out.glob("*.png")] == ["test-000000_unstructured_a0.75_v0.75.png"]


def test_inpaint_of_a_file_without_objectives_reads_it_once(root, reads, tmp_path):
    src = save_model_weights(SYNC, f"{root}/m.safetensors")
    out = tmp_path / "inpaint"
    result = _ok(["inpaint", "--checkpoint", src, *CLIPS, "--num-clips", "1", "--pixel-targets", "--out", str(out)])
    assert reads(src) == 1
    assert "pixel targets: --pixel-targets given" in result.stderr


def test_localize_reads_the_checkpoint_once(root, reads, tmp_path):
    import json

    src = save_model_weights(SYNC, f"{root}/m.safetensors")
    out = tmp_path / "localize"
    _ok(["localize", "--checkpoint", src, *CLIPS, "--num-clips", "2", "--score-only", "--out", str(out)])
    assert reads(src) == 1
    assert json.loads((out / "scores.json").read_text())["checkpoint"] == src


def test_embed_reads_the_checkpoint_once(root, reads, tmp_path):
    from cavkit.pictures.export import read_embeddings

    src = save_model_weights(SYNC, f"{root}/m.safetensors")
    out = tmp_path / "emb.npz"
    _ok(["embed", "--checkpoint", src, *CLIPS, "--out", str(out)])
    assert reads(src) == 1
    arrays, ids = read_embeddings(str(out))
    assert len(ids) == 2 and arrays["audio_pooled"].shape == (2, 4, 32)

"""``weights:NAME`` and ``http(s)://...#sha256=`` wherever a checkpoint path goes: cavkit convert,
model init, load_model, and the ``cavkit weights`` commands (server on 127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import io
import types
from pathlib import Path

import pytest
import torch

import cavkit
from cavkit.checkpoints.convert import upstream_state_dict
from cavkit.checkpoints.build import build_model_node
from cavkit.checkpoints.load import init_from_checkpoint, load_model
from cavkit.errors import CheckpointError
from cavkit.plugins import set_plugin_host
from cavkit.testing import plugin_host, run_cli, tiny_model
from cavkit.weights import WeightsEntry, cache, register_weights

HEADS = ["--set", "encoder.num_heads=2", "--set", "decoder.num_heads=2"]
TINY = tiny_model("cav_mae", decoder={"embed_dim": 16})


@pytest.fixture(scope="module")
def official_bytes():
    """A tiny model saved like an official checkpoint (``module.`` prefix, upstream keys)."""
    torch.manual_seed(1)
    model = build_model_node(TINY).build()
    state = upstream_state_dict(model)  # keys carry the module. prefix, as official files do
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), model.state_dict()


def _files(root):
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_convert_downloads_verifies_and_converts_a_url(server, official_bytes, tmp_path, weights_cache):
    data, original = official_bytes
    server.files["x.pth"] = data
    ref = f"{server.url('x.pth')}#sha256={hashlib.sha256(data).hexdigest()}"
    result = run_cli(["convert", ref, str(tmp_path / "out.safetensors"), *HEADS])
    assert result.exit_code == 0, result.stderr
    converted = load_model(str(tmp_path / "out.safetensors")).state_dict()
    assert set(converted) == set(original)
    assert all(torch.equal(converted[k], original[k]) for k in original)
    assert len(server.gets("x.pth")) == 1  # read twice by convert, downloaded once
    assert "x.pth" in _files(weights_cache)


def test_convert_with_a_wrong_hash_fails_and_caches_nothing(server, official_bytes, tmp_path, weights_cache):
    server.files["x.pth"] = official_bytes[0]
    wrong = "0" * 64
    result = run_cli(["convert", f"{server.url('x.pth')}#sha256={wrong}", str(tmp_path / "out.safetensors"), *HEADS])
    assert result.exit_code == 2
    assert f"SHA-256 mismatch: expected {wrong}" in result.stderr and "Traceback" not in result.stderr
    assert _files(weights_cache / "weights") == [] and not (tmp_path / "out.safetensors").exists()


def _plugin_with(url: str | None, sha: str | None):
    module = types.ModuleType("weights_test_plugin")

    @cavkit.hookimpl
    def cavkit_register_components(registry):
        register_weights(
            registry,
            WeightsEntry(
                name="tiny-test",
                summary="a test checkpoint",
                filename="tiny.pth",
                urls=(url,) if url else (),
                sha256=sha,
                model="cav_mae (tiny)",
                citation="nobody",
            ),
        )

    module.cavkit_register_components = cavkit_register_components
    return module


def test_a_plugin_registers_weights_that_load_by_name_everywhere(server, official_bytes, tmp_path):
    data, original = official_bytes
    server.files["tiny.pth"] = data
    host = plugin_host(_plugin_with(server.url("tiny.pth"), hashlib.sha256(data).hexdigest()))
    listing = run_cli(["weights", "list", "-v"], host=host)
    assert listing.exit_code == 0, listing.stderr
    assert "tiny-test" in listing.stdout and "download" in listing.stdout and "cite: nobody" in listing.stdout
    set_plugin_host(host)
    try:
        model = load_model("weights:tiny-test", overrides=["encoder.num_heads=2", "decoder.num_heads=2"])
        assert all(torch.equal(model.state_dict()[k], original[k]) for k in original)
        # trainer.init (init_from_checkpoint, which calls the same reader) accepts the name too
        fresh = build_model_node(TINY).build()
        init_from_checkpoint(fresh, "weights:tiny-test")
        assert all(torch.equal(fresh.state_dict()[k], original[k]) for k in original if not k.startswith("decoder."))
    finally:
        set_plugin_host(None)
    assert len(server.gets("tiny.pth")) == 1
    verify = run_cli(["weights", "verify"], host=host)
    assert verify.exit_code == 0 and "OK       tiny-test" in verify.stdout and "published hash" in verify.stdout


def test_verify_catches_a_corrupted_cached_file_and_it_is_never_used_again(server, official_bytes):
    data = official_bytes[0]
    server.files["tiny.pth"] = data
    host = plugin_host(_plugin_with(server.url("tiny.pth"), None))  # no published hash: recorded at first fetch
    got = run_cli(["weights", "get", "tiny-test"], host=host)
    assert got.exit_code == 0, got.stderr
    path = got.stdout.strip()
    assert Path(path).read_bytes() == data and "not pinned" in got.stderr
    with open(path, "r+b") as fh:  # flip one byte in place, keeping the size
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    verify = run_cli(["weights", "verify", "tiny-test"], host=host)
    assert verify.exit_code == 1 and "FAILED" in verify.stdout and "SHA-256 mismatch" in verify.stdout
    set_plugin_host(host)
    try:
        with pytest.raises(CheckpointError, match="no integrity record"):
            load_model("weights:tiny-test", overrides=["encoder.num_heads=2", "decoder.num_heads=2"])
    finally:
        set_plugin_host(None)


def test_an_entry_without_url_says_how_to_add_it(tmp_path):
    host = plugin_host(_plugin_with(None, None))
    missing = run_cli(["weights", "get", "tiny-test"], host=host)
    assert missing.exit_code == 2 and "Traceback" not in missing.stderr
    assert "no download URL is recorded" in missing.stderr and "--file PATH" in missing.stderr
    assert "weights/tiny-test/tiny.pth" in missing.stderr
    listing = run_cli(["weights", "list"], host=host)
    assert any(line.split()[:3] == ["tiny-test", "no", "URL"] for line in listing.stdout.splitlines())


def test_a_published_file_added_by_hand_is_used_offline_without_any_download(official_bytes, tmp_path, monkeypatch):
    local = tmp_path / "downloaded.pth"
    local.write_bytes(official_bytes[0])
    added = run_cli(["weights", "get", "in-initial", "--file", str(local)])
    assert added.exit_code == 0, added.stderr
    assert added.stdout.strip().endswith("weights/in-initial/IN-initial.pth")
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")
    model = load_model("weights:in-initial", overrides=["encoder.num_heads=2", "decoder.num_heads=2"])
    assert torch.equal(model.state_dict()["encoder.norm.weight"], official_bytes[1]["encoder.norm.weight"])
    listing = run_cli(["weights", "list"])
    assert any(line.split()[:2] == ["in-initial", "cached"] for line in listing.stdout.splitlines())


def test_a_built_in_entry_without_a_published_hash_downloads_records_and_says_so(
    server, official_bytes, monkeypatch, weights_cache
):
    """The built-in entries carry URLs but no hash: the first download's hash is recorded and printed."""
    data, original = official_bytes
    server.files["cav-mae-base.pth"] = data
    sha = hashlib.sha256(data).hexdigest()
    got = run_cli(["weights", "get", "cav-mae-base", "--url", server.url("cav-mae-base.pth")])
    assert got.exit_code == 0, got.stderr
    path = Path(got.stdout.strip())
    assert path == weights_cache / "weights" / "cav-mae-base" / "cav-mae-base.pth" and path.read_bytes() == data
    record = cache.read_record(path)
    assert record.sha256 == sha and not record.pinned
    assert (
        f"cavkit: cav-mae-base: no published SHA-256 to check the download against (not pinned); recorded sha256 {sha}"
        in got.stderr
    )
    assert f"sha256 {sha}, not pinned" in got.stderr
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")  # from now on the recorded hash is what the file is checked against
    model = load_model("weights:cav-mae-base", overrides=["encoder.num_heads=2", "decoder.num_heads=2"])
    assert all(torch.equal(model.state_dict()[k], original[k]) for k in original)
    assert len(server.gets("cav-mae-base.pth")) == 1
    verify = run_cli(["weights", "verify", "cav-mae-base"])
    assert verify.exit_code == 0 and "hash recorded at first fetch" in verify.stdout


def test_unknown_names_suggest_close_ones(tmp_path):
    result = run_cli(["weights", "get", "cav-mae-scale+++"])
    assert result.exit_code == 2 and "did you mean" in result.stderr and "cav-mae-scale++" in result.stderr


def test_the_cache_honours_cavkit_cache(weights_cache):
    assert cache.weights_dir() == weights_cache / "weights"


def test_library_code_names_weights_in_the_host_it_is_given_not_the_process_host(server, official_bytes):
    from cavkit.errors import UsageError
    from cavkit.weights.resolve import resolve_checkpoint_uri

    data, original = official_bytes
    server.files["tiny.pth"] = data
    host = plugin_host(_plugin_with(server.url("tiny.pth"), hashlib.sha256(data).hexdigest()))
    set_plugin_host(None)  # the process host (built-in plugins only) does not know tiny-test
    model = load_model("weights:tiny-test", overrides=["encoder.num_heads=2", "decoder.num_heads=2"], host=host)
    assert all(torch.equal(model.state_dict()[k], original[k]) for k in original)
    fresh = build_model_node(TINY, host=host).build()
    init_from_checkpoint(fresh, "weights:tiny-test", host=host)
    assert all(torch.equal(fresh.state_dict()[k], original[k]) for k in original if not k.startswith("decoder."))
    with pytest.raises(UsageError, match="weights:tiny-test: weights names are looked up in a plugin registry"):
        resolve_checkpoint_uri("weights:tiny-test")
    with pytest.raises(UsageError, match="unknown weights 'tiny-test'"):
        load_model("weights:tiny-test")  # the process host: no such entry


def test_the_trainer_resolves_trainer_init_names_in_the_host_it_is_given(server, official_bytes, tmp_path):
    """``cavkit train`` hands its host to the Trainer, so a plugin's weights name works in ``trainer.init``."""
    import yaml

    from cavkit.engine.dist import DistInfo
    from cavkit.engine.trainer import Trainer
    from cavkit.recipe import load_recipe

    data, original = official_bytes
    server.files["tiny.pth"] = data
    host = plugin_host(_plugin_with(server.url("tiny.pth"), hashlib.sha256(data).hexdigest()))
    set_plugin_host(None)  # the process host (built-in plugins only) does not know tiny-test
    recipe = tmp_path / "init.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": TINY,
        "objectives": [{"type": "mae", "weight": 1.0}],
        "data": {"train": {"type": "synthetic", "layout": "cav_mae", "num_clips": 8, "image_size": 32,
                           "audio_length": 32, "segment_length": 32}},
        "trainer": {"init": "weights:tiny-test", "max_steps": 1, "batch_size": 4, "progress_bar": False},
        "run": {"tensorboard": False},
    }))
    trainer = Trainer(load_recipe(str(recipe), host=host), run_dir=str(tmp_path / "run"), dist=DistInfo(),
                      argv=["test"], host=host)
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original if not k.startswith("decoder."))

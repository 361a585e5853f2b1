"""`cavkit weights get` into a full or read-only cache: one line naming the file and CAVKIT_CACHE, exit 2,
nothing placed under the final name (issue 16 item 4)."""

from __future__ import annotations

import os

from cavkit.testing import run_cli


def test_a_download_onto_a_full_disk_is_one_line_not_a_network_error(
    server, small_mount, monkeypatch, one_line_write_error
):
    cache = small_mount("size=64k")
    monkeypatch.setenv("CAVKIT_CACHE", str(cache))
    server.files["big.pth"] = os.urandom(256 * 1024)
    result = run_cli(["weights", "get", server.url("big.pth")])
    message = one_line_write_error(result, cache / "weights" / "url", "No space left on device (ENOSPC)")
    assert message.endswith("free some space or set CAVKIT_CACHE to another folder")
    assert "big.pth:" in message and "interrupted" not in message
    assert not [p for p in cache.rglob("big.pth") if p.is_file()]


def test_adding_a_file_to_a_read_only_cache_is_one_line(tmp_path, read_only_dir, monkeypatch, one_line_write_error):
    cache, cause = read_only_dir
    monkeypatch.setenv("CAVKIT_CACHE", str(cache))
    source = tmp_path / "m.pth"
    source.write_bytes(b"weights" * 100)
    result = run_cli(["weights", "get", "cav-mae-as20k", "--file", str(source)])
    one_line_write_error(result, cache, cause)
    assert list(cache.iterdir()) == []

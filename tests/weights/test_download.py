"""Downloads into the weights cache: verified, resumable, atomic, and usable offline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cavkit.errors import CheckpointError, UsageError
from cavkit.weights import cache
from cavkit.weights.resolve import resolve_checkpoint_uri

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, distinct bytes at every offset modulo 256
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_is_verified_recorded_and_then_used_offline(server, weights_cache, monkeypatch):
    server.files["x.pth"] = PAYLOAD
    path = resolve_checkpoint_uri(f"{server.url('x.pth')}#sha256={SHA}")
    assert Path(path).read_bytes() == PAYLOAD
    record = cache.read_record(cache.path_for_url(server.url("x.pth")))
    assert record.sha256 == SHA and record.pinned and record.size == len(PAYLOAD)
    assert not [p for p in _files_under(weights_cache) if p.endswith(".part")]
    # offline: the cached file is used and no request is made
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")
    server.httpd.shutdown()
    assert resolve_checkpoint_uri(f"{server.url('x.pth')}#sha256={SHA}") == path
    assert len(server.gets("x.pth")) == 1


def test_offline_without_a_cached_file_says_what_to_do(server, monkeypatch):
    monkeypatch.setenv("CAVKIT_OFFLINE", "1")
    server.files["x.pth"] = PAYLOAD
    with pytest.raises(CheckpointError, match="not in the cache and CAVKIT_OFFLINE is set"):
        resolve_checkpoint_uri(server.url("x.pth"))
    assert server.requests == []


def test_wrong_hash_leaves_nothing_in_the_cache(server, weights_cache):
    server.files["x.pth"] = PAYLOAD
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(CheckpointError, match=f"SHA-256 mismatch: expected {wrong}, got {SHA}.*nothing was cached"):
        resolve_checkpoint_uri(f"{server.url('x.pth')}#sha256={wrong}")
    assert _files_under(weights_cache / "weights") == []


def test_connection_dropped_half_way_keeps_only_a_part_file_then_resumes_with_range(server, weights_cache):
    server.files["x.pth"] = PAYLOAD
    half = len(PAYLOAD) // 2
    server.drop_after["x.pth"] = half
    ref = f"{server.url('x.pth')}#sha256={SHA}"
    with pytest.raises(
        CheckpointError, match=f"interrupted after {half} of {len(PAYLOAD)} bytes.*run the same command"
    ):
        resolve_checkpoint_uri(ref)
    final = cache.path_for_url(server.url("x.pth"))
    assert not final.exists() and not cache.record_path(final).exists()
    assert cache.part_path(final).stat().st_size == half
    path = resolve_checkpoint_uri(ref)
    assert Path(path).read_bytes() == PAYLOAD
    (_, first_range, _), (_, second_range, if_range) = server.gets("x.pth")
    assert first_range is None and second_range == f"bytes={half}-"
    assert if_range == '"' + SHA[:16] + '"'  # the validator of the first response
    assert not cache.part_path(final).exists()


def test_a_file_that_changed_on_the_server_restarts_instead_of_splicing(server):
    server.files["x.pth"] = PAYLOAD
    server.drop_after["x.pth"] = 1000
    with pytest.raises(CheckpointError, match="interrupted"):
        resolve_checkpoint_uri(server.url("x.pth"))
    changed = PAYLOAD[::-1]
    server.files["x.pth"] = changed
    path = resolve_checkpoint_uri(server.url("x.pth"))
    assert Path(path).read_bytes() == changed  # If-Range did not match: the server sent the whole new file
    assert cache.read_record(cache.path_for_url(server.url("x.pth"))).sha256 == hashlib.sha256(changed).hexdigest()


def test_without_a_pinned_hash_the_first_hash_is_recorded_and_checked_later(server):
    server.files["x.pth"] = PAYLOAD
    path = resolve_checkpoint_uri(server.url("x.pth"))
    record = cache.read_record(cache.path_for_url(server.url("x.pth")))
    assert record.sha256 == SHA and not record.pinned
    with open(path, "r+b") as fh:  # same size, one byte changed, mtime moved on
        fh.seek(10)
        fh.write(b"\xff")
    os.utime(path, ns=(record.mtime_ns + 10**9, record.mtime_ns + 10**9))
    with pytest.raises(CheckpointError, match=f"SHA-256 mismatch: expected {SHA}"):
        resolve_checkpoint_uri(server.url("x.pth"))


def test_http_errors_and_bad_fragments_are_one_clear_message(server):
    with pytest.raises(CheckpointError, match="download failed: HTTP 404"):
        resolve_checkpoint_uri(server.url("missing.pth"))
    with pytest.raises(UsageError, match=r"fragment must be '#sha256=<64 hex digits>'"):
        resolve_checkpoint_uri(server.url("x.pth") + "#md5=abc")
    with pytest.raises(CheckpointError, match="cannot reach the server"):
        resolve_checkpoint_uri("http://127.0.0.1:9/nothing.pth")  # discard port: connection refused


def test_processes_fetching_one_file_at_once_download_it_once(server):
    """The ranks of a torchrun job all resolve trainer.init at the same moment."""
    import threading

    server.files["x.pth"] = PAYLOAD
    ref = f"{server.url('x.pth')}#sha256={SHA}"
    paths, errors = [], []

    def worker():
        try:
            paths.append(resolve_checkpoint_uri(ref))
        except CheckpointError as exc:  # collected and reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(paths)) == 1 and Path(paths[0]).read_bytes() == PAYLOAD
    assert len(server.gets("x.pth")) == 1


def test_a_complete_part_file_left_by_a_killed_process_is_checked_and_placed(server):
    """Killed after the last byte but before the rename: the resume request gets 416 and the .part is used."""
    import json

    server.files["x.pth"] = PAYLOAD
    final = cache.path_for_url(server.url("x.pth"))
    final.parent.mkdir(parents=True)
    cache.part_path(final).write_bytes(PAYLOAD)
    cache.part_meta_path(final).write_text(json.dumps({"url": server.url("x.pth"), "validator": None}))
    path = resolve_checkpoint_uri(f"{server.url('x.pth')}#sha256={SHA}")
    assert Path(path).read_bytes() == PAYLOAD
    assert server.gets("x.pth") == [("x.pth", f"bytes={len(PAYLOAD)}-", None)]
    assert not cache.part_path(final).exists()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/html; charset=utf-8", b"binary-looking bytes"), (None, b"\n<!DOCTYPE html><html><body>sign in</body>")],
    ids=["content-type", "body"],
)
def test_a_web_page_instead_of_the_file_is_refused_and_nothing_is_kept(server, weights_cache, content_type, body):
    """Share pages, sign-in and confirmation pages and expired links answer 200 with HTML."""
    server.files["x.pth"] = body
    if content_type:
        server.content_types["x.pth"] = content_type
    with pytest.raises(CheckpointError, match=r"sent a web page .*nothing was cached.*in a browser"):
        resolve_checkpoint_uri(server.url("x.pth"))
    assert _files_under(weights_cache / "weights") == []  # no file, no record, no .part to resume


def test_a_checkpoint_served_as_octet_stream_is_accepted(server):
    server.files["x.pth"] = PAYLOAD
    server.content_types["x.pth"] = "application/octet-stream"
    assert Path(resolve_checkpoint_uri(f"{server.url('x.pth')}#sha256={SHA}")).read_bytes() == PAYLOAD


def test_an_unpinned_download_prints_the_hash_it_recorded(server, capsys):
    server.files["x.pth"] = PAYLOAD
    resolve_checkpoint_uri(server.url("x.pth"))
    err = capsys.readouterr().err
    assert f"not pinned); recorded sha256 {SHA} ({len(PAYLOAD)} bytes)" in err
    server.files["y.pth"] = PAYLOAD
    resolve_checkpoint_uri(f"{server.url('y.pth')}#sha256={SHA}")
    assert "not pinned" not in capsys.readouterr().err  # a download checked against a pinned hash: no note

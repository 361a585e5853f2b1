"""WebDataset-style tar shards: writing them from a datafile and reading their samples back.

The streaming ``shards`` dataset built on these readers is :mod:`cavkit.data.shard_dataset`.

A shard is a plain tar; each clip contributes consecutive members sharing a key::

    <key>.json            {"video_id": ..., "labels": [...], "num_frames": K}
    <key>.wav             16 kHz mono PCM16
    <key>.frame_<i>.jpg   i = 0 .. K-1

``key`` is the video id with dots replaced (WebDataset splits keys at the first dot). Next to the
shards, ``index.json`` lists each shard with its clip count and ``labels.csv`` is copied when the
datafile folder has one. Many small files become few large sequential reads, which object stores
and network filesystems serve far better.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import os
import re
import tarfile
import tempfile

from cavkit.data import datafile as df
from cavkit.data import storage
from cavkit.io import temporary_sibling
from cavkit.io_errors import disk_errors_as_messages, writing


def shard_key(video_id: str) -> str:
    return video_id.replace(".", "_").replace("/", "_")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_clip(tar: tarfile.TarFile, clip: df.Clip, num_frames: int) -> None:
    key = shard_key(clip.video_id)
    meta = {"video_id": clip.video_id, "labels": list(clip.labels), "num_frames": num_frames}
    _add(tar, f"{key}.json", json.dumps(meta).encode())
    _add(tar, f"{key}.wav", storage.read_bytes(clip.wav))
    for i in range(num_frames):
        _add(tar, f"{key}.frame_{i}.jpg", storage.read_bytes(clip.frame_uri(i)))


def write_shards(datafile_uri: str, out: str, *, shard_size: int = 1000, num_frames: int = 16) -> list[str]:
    """Pack every clip of a datafile (wav + ``num_frames`` frames + labels) into tar shards under ``out``.

    Each shard is built in a temporary file and then renamed (local) or uploaded whole, so a reader
    never sees a partial shard; local shards get the usual permissions (0644 under umask 022).
    Returns the shard URIs.
    """
    clips = df.load_datafile(datafile_uri)
    storage.makedirs(out)
    index = []
    uris = []
    for number, start in enumerate(range(0, len(clips), shard_size)):
        name = f"shard-{number:06d}.tar"
        uri = storage.join(out, name)
        fs, path = storage.filesystem(uri)
        local = storage.is_local(uri)
        if local:  # built beside the target (mode from the umask, like every other output), then renamed
            tmp_path = temporary_sibling(path)
        else:  # built in a local temporary file, then uploaded in one put
            with tempfile.NamedTemporaryFile(suffix=".tar.tmp", delete=False) as tmp:
                tmp_path = tmp.name
        try:  # a failed write names the shard; reading a clip's files keeps its own errors
            with disk_errors_as_messages(uri):
                with writing(uri):
                    handle = open(tmp_path, "wb")  # noqa: SIM115 (closed by the with below)
                with handle:
                    with tarfile.open(fileobj=handle, mode="w") as tar:
                        for clip in clips[start : start + shard_size]:
                            _add_clip(tar, clip, num_frames)
                    handle.flush()
                    os.fsync(handle.fileno())
                with writing(uri):
                    if local:
                        os.replace(tmp_path, path)
                    else:
                        fs.put_file(tmp_path, path)
        finally:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
        index.append({"name": name, "clips": len(clips[start : start + shard_size])})
        uris.append(uri)
    storage.write_text_atomic(storage.join(out, "index.json"), json.dumps({"num_frames": num_frames, "shards": index}, indent=1))
    labels_csv = storage.join(storage.parent(datafile_uri), "labels.csv")
    if storage.exists(labels_csv):
        storage.write_bytes_atomic(storage.join(out, "labels.csv"), storage.read_bytes(labels_csv))
    return uris


# -- reading ----------------------------------------------------------------------------------------
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_urls(urls: list[str]) -> list[str]:
    """Expand ``{000..009}`` ranges and globs (through fsspec) into shard URIs."""
    out: list[str] = []
    for url in urls:
        match = _BRACES.search(url)
        if match:
            low, high = match.group(1), match.group(2)
            width = len(low)
            expanded = [url[: match.start()] + str(n).zfill(width) + url[match.end() :] for n in range(int(low), int(high) + 1)]
            out += expand_urls(expanded)
        elif globlib.has_magic(url):
            fs, path = storage.filesystem(url)
            found = sorted(fs.glob(path))
            out += [fs.unstrip_protocol(p) if storage.has_protocol(url) else p for p in found]
        else:
            out.append(url)
    return out


def iter_samples(url: str):
    """Yield ``(key, {suffix: bytes})`` for each clip of a shard, streaming."""
    import fsspec

    current, members = None, {}
    with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = os.path.basename(info.name)
            key, _, suffix = base.partition(".")
            if current is not None and key != current:
                yield current, members
                members = {}
            current = key
            members[suffix] = tar.extractfile(info).read()
    if current is not None:
        yield current, members

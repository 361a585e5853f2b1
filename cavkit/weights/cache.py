"""The local weights cache: where fetched checkpoints live and how their integrity is recorded.

Layout under ``$CAVKIT_CACHE`` (default ``$XDG_CACHE_HOME/cavkit``, else ``~/.cache/cavkit``)::

    weights/<name>/<file>             a registered entry (``weights:NAME``)
    weights/url/<16 hex>/<file>       a plain URL (the hex is a digest of the URL)
    <file>.sha256.json                its record: SHA-256, size, mtime and where it came from
    <file>.part / <file>.part.json    an unfinished download (resumed by the next fetch)
    locks/<digest>.lock               serialises processes fetching the same file

A file is only ever placed under its final name after its hash was checked (or, when no hash is
known, recorded), so a name without ``.part`` always holds a complete download. Before each use the
file's size and mtime are compared with the record; if either changed the file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import urllib.parse
from pathlib import Path

import attrs

from cavkit.errors import CheckpointError
from cavkit.weights.entry import WeightsEntry

_HASH_CHUNK = 4 << 20


def cache_root() -> Path:
    """``$CAVKIT_CACHE``, else ``$XDG_CACHE_HOME/cavkit``, else ``~/.cache/cavkit``."""
    env = os.environ.get("CAVKIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cavkit"


def weights_dir() -> Path:
    return cache_root() / "weights"


def url_filename(url: str) -> str:
    """The last path component of ``url`` (``checkpoint.pth`` when the path has none)."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    return urllib.parse.unquote(name) or "checkpoint.pth"


def path_for_entry(entry: WeightsEntry, url: str | None = None) -> Path:
    """Where ``weights:NAME`` is cached: ``weights/<name>/<published file name>``.

    Without a published file name the name comes from ``url`` (default: the entry's first URL).
    """
    url = url or (entry.urls[0] if entry.urls else None)
    filename = entry.filename or (url_filename(url) if url else f"{entry.name}.pth")
    return weights_dir() / _safe(entry.name) / filename


def path_for_url(url: str) -> Path:
    """Where a plain URL is cached: ``weights/url/<digest of the URL>/<its file name>``."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return weights_dir() / "url" / digest / url_filename(url)


def _safe(name: str) -> str:
    return name.replace("/", "--")


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@attrs.frozen
class Record:
    """What was verified about a cached file.

    :ivar sha256: its hash when it was placed.
    :ivar pinned: whether that hash was known in advance (entry or ``#sha256=``) rather than first seen.
    """

    sha256: str
    size: int
    mtime_ns: int
    origin: str
    pinned: bool


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def write_record(path: Path, record: Record) -> None:
    from cavkit.io import write_text_atomic

    write_text_atomic(str(record_path(path)), json.dumps(attrs.asdict(record), indent=1))


def read_record(path: Path) -> Record | None:
    try:
        data = json.loads(record_path(path).read_text())
        return Record(**data)
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def stamp(path: Path, sha256: str, origin: str, pinned: bool) -> Record:
    """Record ``sha256`` for ``path`` as it is now (size, mtime)."""
    return stamp_as(path, path, sha256, origin, pinned)


def stamp_as(path: Path, source: Path, sha256: str, origin: str, pinned: bool) -> Record:
    """Record ``sha256`` for ``path`` from the file ``source`` that is about to be renamed to it."""
    st = source.stat()
    record = Record(sha256=sha256, size=st.st_size, mtime_ns=st.st_mtime_ns, origin=origin, pinned=pinned)
    write_record(path, record)
    return record


def check_cached(path: Path, expected_sha256: str | None, *, rehash: bool = False, ref: str = "...") -> Record:
    """Confirm that the cached ``path`` is the file that was verified when it was placed.

    The hash is recomputed when the file's size or mtime differ from its record, when there is no
    record, or when ``rehash`` is set. A file without any record is accepted only against an
    expected hash.

    :raises CheckpointError: the file changed, or its hash is not the expected one.
    """
    record = read_record(path)
    st = path.stat()
    unchanged = record is not None and record.size == st.st_size and record.mtime_ns == st.st_mtime_ns
    if unchanged and not rehash and (expected_sha256 is None or record.sha256 == expected_sha256):
        return record
    actual = sha256_file(path)
    wanted = expected_sha256 or (record.sha256 if record else None)
    if wanted is None:
        raise CheckpointError(
            f"{path}: cached file has no integrity record and no known SHA-256; fetch it again with "
            f"`cavkit weights get {ref} --force`"
        )
    if actual != wanted:
        raise CheckpointError(
            f"{path}: SHA-256 mismatch: expected {wanted}, the cached file has {actual} (it changed or is "
            f"corrupt); fetch it again with `cavkit weights get {ref} --force`"
        )
    return stamp(
        path,
        actual,
        record.origin if record else str(path),
        expected_sha256 is not None or bool(record and record.pinned),
    )


def remove(path: Path) -> None:
    """Delete a cached file with its record and any partial download."""
    for p in (path, record_path(path), part_path(path), part_meta_path(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def lock_path(path: Path) -> Path:
    """The lock file serialising fetches of ``path`` (outside ``weights/``, so it never looks like data)."""
    return cache_root() / "locks" / (hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:24] + ".lock")


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def part_meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".part.json")

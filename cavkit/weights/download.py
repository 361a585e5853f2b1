"""Downloading one file into the cache: resumable, hash-checked, placed atomically.

urllib from the standard library does the HTTP: all this needs is a GET with ``Range`` and
``If-Range`` headers and a streamed body, which urllib does (honouring ``*_proxy`` variables) without
adding a dependency; fsspec's HTTP backend would need aiohttp and still leave resume to us.

Steps (spec of the behaviour, tested against a local server in tests/weights):

1. bytes go to ``<file>.part``; an existing ``.part`` from an interrupted run is resumed with
   ``Range: bytes=<size>-`` (and ``If-Range`` with the first response's ETag / Last-Modified, so a
   file that changed on the server restarts from zero instead of being spliced);
2. a connection that ends before ``Content-Length`` is an error that keeps the ``.part`` for the
   next attempt and says so; nothing under the final name is touched;
3. the complete ``.part`` is hashed; a hash (or size) other than the expected one deletes it;
4. only then are the record and, last, the file moved under the final name (``os.replace``).

A web page instead of a file (``Content-Type: text/html``, or a body that starts like HTML: a share
page, a sign-in or confirmation page, an expired link) is refused before anything is kept. Without
an expected hash the hash of the download is recorded and printed, marked as not pinned.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cavkit.errors import CheckpointError
from cavkit.io_errors import writing
from cavkit.weights import cache

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_USER_AGENT = "cavkit-weights"
#: where to send the user when the cache cannot be written (disk full, read-only, no permission)
CACHE_ADVICE = "set CAVKIT_CACHE to another folder"


def offline() -> bool:
    """``CAVKIT_OFFLINE=1``: never open a connection (cached files still work)."""
    return os.environ.get("CAVKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _read_part_meta(dest: Path, url: str) -> tuple[bool, str | None]:
    """Whether the partial download beside ``dest`` is of ``url``, and its validator (ETag /
    Last-Modified, ``None`` when the server sent neither: then only a pinned hash guards the splice)."""
    try:
        meta = json.loads(cache.part_meta_path(dest).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False, None
    return meta.get("url") == url, meta.get("validator")


def _discard_part(dest: Path) -> None:
    for p in (cache.part_path(dest), cache.part_meta_path(dest)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _open(url: str, offset: int, validator: str | None, timeout: float):
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _append(handle, chunk: bytes, dest: Path) -> None:
    """Write ``chunk`` of the download of ``dest``; a failed write names ``dest`` (:mod:`cavkit.io_errors`)."""
    with writing(str(dest), CACHE_ADVICE):
        handle.write(chunk)


def _open_source(source: str):
    """Open a file the user fetched by hand; failing to read it is the source's problem, not the cache's."""
    import fsspec

    try:
        return fsspec.open(source, "rb").open()
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot read it ({exc.strerror or exc})") from None


def _looks_like_html(first: bytes) -> bool:
    """Whether a body starts like a web page (checkpoints are zip or pickle files, never text)."""
    head = first[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _web_page_error(url: str, what: str, label: str | None) -> CheckpointError:
    if label and not label.startswith(("http://", "https://")):
        fix = f"download it in a browser and add it with `cavkit weights get {label} --file PATH`"
    else:
        fix = "download it in a browser and give the local file instead of the URL"
    return CheckpointError(
        f"{url}: the server sent a web page ({what}) instead of the checkpoint (a share, sign-in or "
        f"confirmation page, or an expired link); nothing was cached. Fix: {fix}"
    )


def _note_unpinned(record: cache.Record, dest: Path, label: str | None) -> None:
    """Say that a download had no published hash to be checked against, and which hash is now trusted."""
    print(
        f"cavkit: {label or dest.name}: no published SHA-256 to check the download against (not pinned); "
        f"recorded sha256 {record.sha256} ({record.size} bytes), checked on every later use",
        file=sys.stderr,
    )


def _hash_existing(part: Path, offset: int):
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        remaining = offset
        while remaining:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    label: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> cache.Record:
    """Fetch ``url`` into ``dest`` (see the module docstring); returns the cache record.

    :raises CheckpointError: unreachable server, HTTP error, truncated transfer (``.part`` kept for
        resume), or a hash / size mismatch (download deleted).
    """
    if offline():
        raise CheckpointError(
            f"{url}: not in the cache and CAVKIT_OFFLINE is set; fetch it on a machine with "
            f"network access (`cavkit weights get`) or copy it in with `--file`"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = cache.part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    same_url, validator = _read_part_meta(dest, url) if offset else (False, None)
    if offset and not same_url:  # a .part of another URL, or without its metadata: start over
        _discard_part(dest)
        offset = 0
    try:
        response = _open(url, offset, validator, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part may already be complete
            total = re.search(r"/(\d+)$", exc.headers.get("Content-Range") or "")
            if total and int(total.group(1)) == offset:
                record = _finish(url, dest, _hash_existing(part, offset), offset, expected_sha256, expected_size)
                if expected_sha256 is None:
                    _note_unpinned(record, dest, label)
                return record
            _discard_part(dest)
            return download(
                url,
                dest,
                expected_sha256=expected_sha256,
                expected_size=expected_size,
                label=label,
                timeout=timeout,
                progress=progress,
            )
        raise CheckpointError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(
            f"{url}: cannot reach the server ({reason}); check the address and the network, or copy the "
            f"file in with `cavkit weights get ... --file PATH`"
        ) from None
    with response:
        status = getattr(response, "status", 200)
        total: int | None = None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
            if not match or int(match.group(1)) != offset:
                _discard_part(dest)
                raise CheckpointError(
                    f"{url}: the server answered the resume request with an unexpected range "
                    f"({response.headers.get('Content-Range')!r}); the partial file was deleted, run the command again"
                )
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:  # 200: the whole file (the server ignored Range, or the file changed since the .part)
            offset = 0
            content_type = response.headers.get("Content-Type") or ""
            if content_type.split(";")[0].strip().lower() == "text/html":
                _discard_part(dest)
                raise _web_page_error(url, f"Content-Type {content_type}", label)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        new_validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if status != 206:
            cache.part_meta_path(dest).write_text(json.dumps({"url": url, "validator": new_validator}))
        digest = _hash_existing(part, offset) if offset else hashlib.sha256()
        received = offset
        error: str | None = None
        from tqdm import tqdm

        with (
            open(part, "ab" if offset else "wb") as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label or cache.url_filename(url),
                disable=None if progress else True,
                file=sys.stderr,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    if received == 0 and _looks_like_html(chunk):
                        error = "web page"
                        break
                    _append(fh, chunk, dest)  # a full disk is not a network error: it escapes this except
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            fh.flush()
            os.fsync(fh.fileno())
    if error == "web page":
        _discard_part(dest)
        raise _web_page_error(url, "the body is HTML", label)
    if error is not None or (total is not None and received != total):
        of = f" of {total}" if total is not None else ""
        raise CheckpointError(
            f"{url}: download interrupted after {received}{of} bytes ({error or 'connection closed early'}); "
            f"the partial download is kept as {part} and nothing was cached; run the same command again to resume"
        )
    record = _finish(url, dest, digest, received, expected_sha256, expected_size)
    if expected_sha256 is None:
        _note_unpinned(record, dest, label)
    return record


def _finish(url, dest: Path, digest, size: int, expected_sha256, expected_size) -> cache.Record:
    """Check the complete ``.part`` and move it under its final name (record first, then the file)."""
    part = cache.part_path(dest)
    actual = digest.hexdigest()
    problem = None
    if expected_size is not None and size != expected_size:
        problem = f"size mismatch: expected {expected_size} bytes, got {size}"
    elif expected_sha256 is not None and actual != expected_sha256:
        problem = f"SHA-256 mismatch: expected {expected_sha256}, got {actual}"
    if problem:
        _discard_part(dest)
        raise CheckpointError(f"{url}: {problem}; the download was deleted and nothing was cached")
    record = cache.stamp_as(dest, part, actual, url, pinned=expected_sha256 is not None)
    os.replace(part, dest)
    _discard_part(dest)
    return record


def import_file(
    source: str, dest: Path, *, expected_sha256: str | None = None, expected_size: int | None = None
) -> cache.Record:
    """Copy a file the user fetched by hand (any fsspec URI) into the cache, checked like a download."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _discard_part(dest)
    part = cache.part_path(dest)
    digest = hashlib.sha256()
    size = 0
    try:
        with _open_source(source) as src, open(part, "wb") as out:
            while chunk := src.read(_CHUNK):
                _append(out, chunk, dest)
                digest.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except FileNotFoundError:
        _discard_part(dest)
        raise CheckpointError(f"{source}: file not found") from None
    except IsADirectoryError:
        _discard_part(dest)
        raise CheckpointError(f"{source}: is a directory, expected a checkpoint file") from None
    if size == 0:
        _discard_part(dest)
        raise CheckpointError(f"{source}: the file is empty, expected a checkpoint")
    return _finish(source, dest, digest, size, expected_sha256, expected_size)

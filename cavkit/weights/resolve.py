"""Turning ``weights:NAME`` and ``http(s)://`` references into verified local files.

:func:`resolve_checkpoint_uri` is called by :func:`cavkit.checkpoints.read.read_checkpoint_bytes`,
the one place checkpoint paths are read, so every caller (``trainer.init``,
``--checkpoint``, ``cavkit convert``, ``embed``, ``inpaint``, ``localize``, ``load_model``) accepts
them. A cached, verified file is used without any network access.

``weights:NAME`` is looked up in the registry of the plugin host the caller passes (commands pass
theirs); this module never reads the process-wide host.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import attrs

from cavkit.errors import CheckpointError, UsageError
from cavkit.io_errors import writing
from cavkit.weights import cache
from cavkit.weights.download import CACHE_ADVICE, download, import_file
from cavkit.weights.entry import WEIGHTS_SCHEME, WeightsEntry, is_weights_ref, parse_url


def lookup(name: str, host: Any) -> WeightsEntry:
    """The entry called ``name`` (bare or ``plugin/name``) in ``host``'s registry.

    :param host: a :class:`~cavkit.plugins.PluginHost` (its ``registry`` and ``failed_names()``).
    :raises UnknownComponentError: with close matches and ``cavkit weights list`` as the fix.
    """
    spec = host.registry.get("weights", name, failed_plugins=host.failed_names())
    entry = spec.factory_callable()
    if not isinstance(entry, WeightsEntry):
        raise UsageError(f"weights {spec.qualified_id!r}: registered object is not a WeightsEntry ({entry!r})")
    return entry


def entries(host: Any) -> list[WeightsEntry]:
    """Every entry registered in ``host``, sorted by name."""
    return [spec.factory_callable() for spec in host.registry.specs("weights")]


@attrs.frozen
class Target:
    """What a reference points to: the cache path, the URLs to try and what the file must hash to."""

    ref: str
    path: Path
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    entry: WeightsEntry | None = None


def target_for(ref: str, host: Any, *, url: str | None = None) -> Target:
    """The cache target of ``weights:NAME``, ``NAME`` or an http(s) URL (``url`` replaces an entry's URLs).

    :param host: the plugin host whose registry names the entries; may be ``None`` for a URL.
    :raises UsageError: a name without a host to look it up in.
    """
    if ref.startswith(("http://", "https://")):
        parsed = parse_url(ref)
        return Target(ref, cache.path_for_url(parsed.url), (parsed.url,), parsed.sha256, None)
    if host is None:
        raise UsageError(
            f"{ref}: weights names are looked up in a plugin registry and none was given; pass host= "
            "(cavkit.api.load_model and the commands do)"
        )
    entry = lookup(ref.removeprefix(WEIGHTS_SCHEME), host)
    sha = entry.sha256
    urls = entry.urls
    if url is not None:
        parsed = parse_url(url)
        urls, sha = (parsed.url,), parsed.sha256 or entry.sha256
    return Target(ref, cache.path_for_entry(entry, urls[0] if urls else None), urls, sha, entry.size, entry)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock (``locks/<digest>.lock`` in the cache) so that processes fetching one file (the ranks of a
    torchrun job, say) download it once; the others wait and then find it cached."""
    lock = cache.lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform: no cross-process lock
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fetch(target: Target, *, force: bool = False, progress: bool = True) -> Path:
    """A verified local copy of ``target``, downloading only when it is not cached (or ``force``)."""
    if not force and target.path.is_file():
        with writing(str(target.path), CACHE_ADVICE):  # may refresh the file's record
            cache.check_cached(target.path, target.sha256, ref=target.ref.removeprefix(WEIGHTS_SCHEME))
        return target.path
    with writing(str(target.path), CACHE_ADVICE), _exclusive(target.path):
        return _fetch_locked(target, force=force, progress=progress)


def _fetch_locked(target: Target, *, force: bool, progress: bool) -> Path:
    if force:
        cache.remove(target.path)
    if target.path.is_file():
        cache.check_cached(target.path, target.sha256, ref=target.ref.removeprefix(WEIGHTS_SCHEME))
        return target.path
    if not target.urls:
        entry = target.entry
        raise CheckpointError(
            f"{target.ref}: not in the cache ({target.path}) and no download URL is recorded for it.\n"
            f"  published: {entry.source if entry else '?'}"
            + (f" as {entry.filename}" if entry and entry.filename else "")
            + f"\n  fix: download it yourself, then `cavkit weights get {target.ref.removeprefix(WEIGHTS_SCHEME)} "
            f"--file PATH` (or `--url URL`)"
        )
    errors = []
    for url in target.urls:
        try:
            download(
                url,
                target.path,
                expected_sha256=target.sha256,
                expected_size=target.size,
                label=target.ref.removeprefix(WEIGHTS_SCHEME),
                progress=progress,
            )
            return target.path
        except CheckpointError as exc:
            errors.append(str(exc))
            if len(target.urls) == 1:
                raise
    raise CheckpointError(f"{target.ref}: every download URL failed:\n  " + "\n  ".join(errors))


def add_file(target: Target, source: str) -> Path:
    """Put a file the user downloaded by hand into the cache under ``target`` (hash-checked if known)."""
    with writing(str(target.path), CACHE_ADVICE), _exclusive(target.path):
        cache.remove(target.path)
        import_file(source, target.path, expected_sha256=target.sha256, expected_size=target.size)
    return target.path


def resolve_checkpoint_uri(uri: str, host: Any = None) -> str:
    """A local path for ``weights:NAME`` / ``http(s)://...[#sha256=...]``; any other URI unchanged.

    :param host: the plugin host whose registry names ``weights:`` entries (not needed for URLs).
    """
    if not is_weights_ref(uri):
        return uri
    return str(fetch(target_for(uri, host)))

"""``cavkit weights list | get | verify``: the published checkpoints and the local cache. No torch import."""

from __future__ import annotations

import click

from cavkit.errors import CavkitError, CheckpointError, UsageError
from cavkit.plugins import get_plugin_host


@click.group("weights")
def weights_group() -> None:
    """Published checkpoints by name (weights:NAME) and the download cache (CAVKIT_CACHE)."""


@weights_group.command("list")
@click.option(
    "-v", "--verbose", is_flag=True, help="Also show file, model, URLs, hash, notes, source, licence and citation."
)
def weights_list(verbose: bool) -> None:
    """List the registered checkpoints and whether each is in the cache."""
    from cavkit.weights import cache
    from cavkit.weights.resolve import entries

    click.echo(f"cache: {cache.weights_dir()}")
    listed = entries(get_plugin_host())
    width = max([24, *(len(entry.name) for entry in listed)])
    for entry in listed:
        path = cache.path_for_entry(entry)
        state = "cached" if path.is_file() else ("download" if entry.urls else "no URL")
        click.echo(f"  {entry.name:<{width}} {state:<9} {entry.summary}")
        if verbose:
            for label, value in _details(entry):
                click.echo(f"      {label}: {value}")
            if path.is_file():
                click.echo(f"      cached at: {path}")


def _details(entry) -> list[tuple[str, object]]:
    """The ``label: value`` lines ``cavkit weights list -v`` shows for ``entry``."""
    import yaml

    config = entry.config and yaml.safe_dump(dict(entry.config), default_flow_style=True, sort_keys=False).strip()
    lines = [
        ("file", entry.filename or "(name not recorded)"),
        ("loads into", entry.model),
        ("recipe model", config or "not stated"),
        ("state-dict keys", entry.keys),
        ("urls", ", ".join(entry.urls) or "none recorded"),
        *(("mirror (by hand)", mirror) for mirror in entry.mirrors),
        ("sha256", entry.sha256 or "not published (recorded at first fetch)"),
        ("size", f"{entry.size} bytes" if entry.size else "unknown"),
        ("notes", entry.notes),
        ("source", entry.source),
        ("licence", entry.licence),
        ("cite", entry.citation),
    ]
    return [(label, value) for label, value in lines if label != "notes" or value]


@weights_group.command("get")
@click.argument("ref", metavar="NAME|URL")
@click.option(
    "--file",
    "file",
    default=None,
    metavar="PATH",
    help="Add a file you downloaded yourself to the cache under NAME (hash-checked when known).",
)
@click.option("--url", default=None, metavar="URL[#sha256=HEX]", help="Download NAME from this address.")
@click.option("--force", is_flag=True, help="Fetch again even if the cache already holds the file.")
def weights_get(ref: str, file: str | None, url: str | None, force: bool) -> None:
    """Fetch NAME (see `cavkit weights list`) or a URL into the cache and print its local path."""
    from cavkit.weights.resolve import add_file, fetch, target_for

    if file and url:
        raise UsageError("give either --file or --url, not both")
    is_url = ref.startswith(("http://", "https://"))
    if is_url and (file or url):
        raise UsageError("--file and --url name the source of a registered NAME; a URL is its own source")
    target = target_for(ref, get_plugin_host(), url=url)
    path = add_file(target, file) if file else fetch(target, force=force)
    from cavkit.weights.cache import read_record

    record = read_record(path)
    pinned = (
        "checked against the published hash"
        if record and record.pinned
        else "not pinned: recorded at first fetch, checked on every later use"
    )
    click.echo(f"{path}  (sha256 {record.sha256 if record else '?'}, {pinned})", err=True)
    click.echo(str(path))


@weights_group.command("verify")
@click.argument("refs", nargs=-1, metavar="[NAME|URL ...]")
def weights_verify(refs: tuple[str, ...]) -> None:
    """Re-hash cached files (default: every file in the cache) against their expected or recorded hash.

    A file that fails loses its record, so it is never used again until fetched anew; exit 1.
    """
    from cavkit.weights import cache
    from cavkit.weights.resolve import target_for

    if refs:
        items = []
        for ref in refs:
            target = target_for(ref, get_plugin_host())
            items.append((ref, target.path, target.sha256))
    else:
        known = {}
        from cavkit.weights.resolve import entries

        for entry in entries(get_plugin_host()):
            path = cache.path_for_entry(entry)
            known[path] = (entry.name, entry.sha256)
        root = cache.weights_dir()
        for record_file in sorted(root.rglob("*.sha256.json")) if root.is_dir() else []:
            path = record_file.with_name(record_file.name.removesuffix(".sha256.json"))
            known.setdefault(path, (str(path.relative_to(root)), None))
        items = [(name, path, sha) for path, (name, sha) in known.items() if path.is_file()]
        if not items:
            click.echo(f"the cache ({root}) holds no checkpoints")
            return
    failed = 0
    for name, path, sha in items:
        if not path.is_file():
            click.echo(f"MISSING  {name}: not in the cache (`cavkit weights get {name}`)")
            failed += 1
            continue
        try:
            record = cache.check_cached(path, sha, rehash=True, ref=name)
            how = "published hash" if record.pinned else "hash recorded at first fetch"
            click.echo(f"OK       {name}: {path} ({how} {record.sha256[:16]}...)")
        except CheckpointError as exc:
            cache.record_path(path).unlink(missing_ok=True)
            click.echo(f"FAILED   {exc}")
            failed += 1
    if failed:
        raise CavkitError(f"{failed} cached checkpoint(s) failed verification (see above)")

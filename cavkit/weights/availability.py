"""Whether a checkpoint reference can be read, and what to do when it cannot (used by the preflight).

Answers without downloading anything: a local or fsspec path must exist; ``weights:NAME`` must be
registered and either cached or fetchable (a download URL, and ``CAVKIT_OFFLINE`` unset); ``timm:``
must name a timm model (and its ``=FILE`` exist). A missing file that is a published checkpoint gets
the ``cavkit weights get NAME --file ...`` fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _published_hint(uri: str) -> str:
    from cavkit.weights.zoo import PUBLISHED

    base = uri.rstrip("/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0].lower()
    for entry in PUBLISHED:
        # a bare number (the ablation files 50.pth, 65.pth, 85.pth) is too generic to name a published file
        by_file = entry.filename and entry.filename.lower() == base.lower() and not stem.isdigit()
        if by_file or entry.name == stem:
            published = f"this is the published '{entry.name}' ({entry.filename or 'see `cavkit weights list -v`'})"
            if entry.urls:
                hint = (
                    f"{published}: use weights:{entry.name} (downloaded into the cache on first use; "
                    f"`cavkit weights get {entry.name}` fetches it now), or place the file at {uri}"
                )
            else:
                hint = (
                    f"{published}: add it to the cache with `cavkit weights get {entry.name} --file "
                    f"DOWNLOADED_FILE` and use weights:{entry.name}, or place the file at {uri}"
                )
            if entry.name == "in-initial":
                hint += "; or build it from timm with timm:vit_base_patch16_224.mae (spec §4.7)"
            return hint
    return "give an existing checkpoint, weights:NAME (`cavkit weights list`) or an http(s) URL"


def checkpoint_problems(uri: str, *, exists: Callable[[str], bool], host: Any = None) -> list[tuple[str, str]]:
    """``[(problem, fix)]`` that stop ``uri`` (an ``init`` value) from being read; ``[]`` when it can be.

    Never downloads: a ``weights:`` entry or URL that is not cached is fine when it can be fetched.
    """
    from cavkit.errors import CavkitError
    from cavkit.weights.download import offline
    from cavkit.weights.entry import is_weights_ref
    from cavkit.weights.resolve import target_for

    if uri.startswith("timm:"):
        from cavkit.checkpoints.timm_init import parse_timm_ref

        try:
            name, file = parse_timm_ref(uri)
        except CavkitError as exc:
            return [(str(exc), "")]
        import timm

        found = []
        if not timm.is_model(name):
            found.append((f"timm has no model {name!r}", "see timm.list_models('vit_base_patch16*')"))
        if file is not None and not is_weights_ref(file) and not exists(file):
            found.append((f"{file} does not exist", "give the ViT checkpoint file after '='"))
        return found
    if is_weights_ref(uri):
        try:
            target = target_for(uri, host)
        except CavkitError as exc:
            return [(str(exc), "see `cavkit weights list`")]
        if target.path.is_file():
            return []
        name = uri.removeprefix("weights:")
        if not target.urls:
            source = target.entry.source if target.entry else ""
            return [
                (
                    f"{uri} is not in the cache and no download URL is recorded for it",
                    f"download it yourself ({source}), then `cavkit weights get {name} --file PATH`",
                )
            ]
        if offline():
            return [
                (
                    f"{uri} is not in the cache and CAVKIT_OFFLINE is set",
                    f"`cavkit weights get {name}` on a machine with network access",
                )
            ]
        return []  # downloaded (and verified) when the run starts
    if not exists(uri):
        return [(f"checkpoint {uri} does not exist", _published_hint(uri))]
    return []

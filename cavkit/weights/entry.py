"""What a published checkpoint is: :class:`WeightsEntry`, and the ``weights:`` / URL reference syntax.

No torch import: the registry lists entries without loading any model code.

References accepted wherever a checkpoint path is:

* ``weights:NAME`` (or ``weights:PLUGIN/NAME``): a registered entry, fetched into the cache;
* ``https://host/file.pth`` or ``http://...``, optionally ending in ``#sha256=<64 hex digits>``:
  fetched into the cache and checked against that hash before use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from cavkit.errors import UsageError

WEIGHTS_SCHEME = "weights:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_sha256(instance, attribute, value) -> None:
    if value is not None and not _SHA256.match(value):
        raise ValueError(f"{attribute.name} must be 64 lower-case hex digits, got {value!r}")


@attrs.frozen(kw_only=True)
class WeightsEntry:
    """One downloadable checkpoint, registered under kind ``weights``.

    :ivar name: the name used in ``weights:NAME``.
    :ivar summary: one line for ``cavkit weights list`` / ``cavkit components weights``.
    :ivar filename: the file name it is published under (``audio_model.21.pth``); the cache keeps it.
    :ivar urls: direct download URLs, tried in order; empty when no URL is known (``--file``/``--url`` then).
    :ivar mirrors: pages where the file can be fetched by hand in a browser (a share page, not a direct
        download); shown to the user, never tried by the downloader.
    :ivar sha256: expected SHA-256 of the file, or ``None`` when not published (then the hash seen at
        the first download is recorded and checked on every later use).
    :ivar size: expected size in bytes, or ``None`` when not known.
    :ivar model: the model configuration the file loads into, in words (``cav_mae`` ViT-B, ...).
    :ivar config: the same as a recipe ``model:`` node (``{"type": "classifier", "num_classes": 527}``),
        or ``None`` when not stated; tests build every built-in one.
    :ivar keys: the number of state-dict keys the file holds (spec §4), when known.
    :ivar source: where the file is published, in words (a README table, a Drive id).
    :ivar licence: the licence line to show users.
    :ivar citation: the paper to cite.
    :ivar notes: what the publisher states about the file (training run, published result, intended use).
    """

    name: str
    summary: str
    filename: str | None = None
    urls: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    mirrors: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    sha256: str | None = attrs.field(default=None, validator=_check_sha256)
    size: int | None = None
    model: str = ""
    config: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    keys: int | None = None
    source: str = ""
    licence: str = ""
    citation: str = ""
    notes: str = ""

    def __call__(self, *_args, **_context) -> WeightsEntry:
        """The registry's factory protocol: building a ``weights`` component yields its entry."""
        return self


def register_weights(registry, entry: WeightsEntry) -> None:
    """Register ``entry`` from a ``cavkit_register_components`` hook (kind ``weights``).

    Example, in a plugin module::

        @cavkit.hookimpl
        def cavkit_register_components(registry):
            register_weights(registry, WeightsEntry(name="my-model", summary="...",
                                                    urls=("https://example.org/m.pth",), sha256="..."))
    """
    registry.add("weights", entry.name, entry, WeightsEntry, summary=entry.summary)


@attrs.frozen
class UrlRef:
    """An ``http(s)://`` reference split into the URL to fetch and the hash its fragment pins."""

    url: str
    sha256: str | None


def is_weights_ref(uri: str) -> bool:
    """Whether ``uri`` is fetched through the weights cache (``weights:NAME`` or an http(s) URL)."""
    return isinstance(uri, str) and (uri.startswith((WEIGHTS_SCHEME, "http://", "https://")))


def parse_url(uri: str) -> UrlRef:
    """``https://h/x.pth#sha256=ab..`` -> ``UrlRef("https://h/x.pth", "ab..")``.

    :raises UsageError: a fragment other than ``sha256=<64 hex digits>``.
    """
    url, _, fragment = uri.partition("#")
    if not fragment:
        return UrlRef(url, None)
    key, _, value = fragment.partition("=")
    value = value.strip().lower()
    if key != "sha256" or not _SHA256.match(value):
        raise UsageError(
            f"{uri}: the URL fragment must be '#sha256=<64 hex digits>' (the file's SHA-256), got '#{fragment}'"
        )
    return UrlRef(url, value)

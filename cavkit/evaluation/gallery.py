"""A small picture of retrieval results: each query beside its top-k gallery matches.

``.html`` writes a table (thumbnails embedded as base64 PNG when pictures are available, else clip
ids and scores); ``.png`` writes one image grid. The true match is framed in green, others in grey.
Pictures come from ``fetch(index) -> dataset item``: frames are drawn from ``image`` (min-max
scaled, so any normalisation displays), audio from ``audio`` as a spectrogram (time left to right,
low frequencies at the bottom).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from cavkit.errors import UsageError
from cavkit.io import write_bytes_atomic
from cavkit.evaluation.retrieval import DIRECTION_LABELS, DIRECTIONS, DirectionResult

TILE = 112
Fetch = Callable[[int], dict[str, Any]]


def _to_uint8(picture: np.ndarray) -> np.ndarray:
    low, high = float(picture.min()), float(picture.max())
    scaled = (picture - low) / (high - low) if high > low else np.zeros_like(picture)
    return (scaled * 255).clip(0, 255).astype(np.uint8)


def modality_tile(item: dict[str, Any] | None, modality: str) -> Image.Image:
    """A ``TILE x TILE`` picture of one clip's frame (``visual``) or spectrogram (``audio``)."""
    if item is None or item.get("image" if modality == "visual" else "audio") is None:
        return Image.new("RGB", (TILE, TILE), (235, 235, 235))
    if modality == "visual":
        image = torch.as_tensor(item["image"]).float()
        if image.dim() == 4:  # [K,3,H,W]: the middle frame
            image = image[image.shape[0] // 2]
        picture = Image.fromarray(_to_uint8(image.permute(1, 2, 0).numpy()))
    else:
        audio = torch.as_tensor(item["audio"]).float()
        if audio.dim() == 3:  # [K,L,128]: the middle segment
            audio = audio[audio.shape[0] // 2]
        picture = Image.fromarray(_to_uint8(audio.T.flip(0).numpy())).convert("RGB")  # [128 freq, T]
    return picture.resize((TILE, TILE))


def _framed(tile: Image.Image, good: bool) -> Image.Image:
    out = tile.copy()
    ImageDraw.Draw(out).rectangle(
        [0, 0, TILE - 1, TILE - 1], outline=(30, 170, 60) if good else (160, 160, 160), width=4 if good else 1
    )
    return out


def _png_b64(tile: Image.Image) -> str:
    buffer = io.BytesIO()
    tile.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _rows(result: DirectionResult, queries: int) -> list[tuple[int, list[tuple[int, float]]]]:
    if result.top_indices is None or result.top_scores is None:
        raise UsageError("a gallery needs the top matches: evaluate with top_k > 0")
    n = min(queries, result.top_indices.shape[0])
    return [
        (q, [(int(j), float(s)) for j, s in zip(result.top_indices[q], result.top_scores[q], strict=True)])
        for q in range(n)
    ]


def gallery_html(
    results: dict[str, DirectionResult],
    clip_ids: list[str],
    *,
    queries: int = 8,
    fetch: Fetch | None = None,
    title: str = "",
) -> str:
    """An HTML page with one table per direction."""
    cache: dict[int, dict[str, Any] | None] = {}

    def item(i: int) -> dict[str, Any] | None:
        if fetch is None:
            return None
        if i not in cache:
            cache[i] = fetch(i)
        return cache[i]

    parts = [
        "<!doctype html><meta charset='utf-8'><title>cavkit retrieval</title>",
        "<style>body{font-family:sans-serif}td{text-align:center;font-size:12px;padding:4px}"
        ".hit{outline:3px solid #1eaa3c}</style>",
        f"<h1>Retrieval: top matches {html.escape(title)}</h1>",
    ]
    for direction, result in results.items():
        query_side, gallery_side = DIRECTIONS[direction]
        parts.append(f"<h2>{html.escape(DIRECTION_LABELS[direction])}</h2><table>")
        for q, matches in _rows(result, queries):
            cells = [
                _cell(item(q), query_side, [f"query {clip_ids[q]}", f"rank {int(result.ranks[q]) + 1}"], False, fetch)
            ]
            for j, score in matches:
                cells.append(_cell(item(j), gallery_side, [clip_ids[j], f"{score:.3f}"], j == q, fetch))
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _cell(item: dict[str, Any] | None, modality: str, caption: list[str], hit: bool, fetch: Fetch | None) -> str:
    cls = " class='hit'" if hit else ""
    picture = ""
    if fetch is not None:
        encoded = _png_b64(modality_tile(item, modality))
        picture = f"<img{cls} width={TILE} height={TILE} src='data:image/png;base64,{encoded}'><br>"
    text = "<br>".join(html.escape(line) for line in caption)
    if hit:
        text = f"<b>{text}</b>"
    return f"<td>{picture}{text}</td>"


def gallery_png(
    results: dict[str, DirectionResult], clip_ids: list[str], *, queries: int = 8, fetch: Fetch | None = None
) -> bytes:
    """One PNG: for each direction, a row per query (query tile, then its top-k)."""
    rows: list[tuple[str, list[tuple[Image.Image, str]]]] = []
    for direction, result in results.items():
        query_side, gallery_side = DIRECTIONS[direction]
        for q, matches in _rows(result, queries):
            query_item = fetch(q) if fetch else None
            tiles = [(modality_tile(query_item, query_side), f"{clip_ids[q]}")]
            for j, score in matches:
                tiles.append(
                    (_framed(modality_tile(fetch(j) if fetch else None, gallery_side), j == q), f"{score:.3f}")
                )
            rows.append((DIRECTION_LABELS[direction], tiles))
    width = max(len(t) for _, t in rows) * (TILE + 8) + 8
    height = len(rows) * (TILE + 24) + 8
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, tiles) in enumerate(rows):
        y = 8 + r * (TILE + 24)
        for c, (tile, caption) in enumerate(tiles):
            x = 8 + c * (TILE + 8)
            canvas.paste(tile, (x, y))
            draw.text((x, y + TILE + 2), caption if c else f"{label}: {caption}"[:22], fill=(0, 0, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def write_gallery(
    uri: str,
    results: dict[str, DirectionResult],
    clip_ids: list[str],
    *,
    queries: int = 8,
    fetch: Fetch | None = None,
    title: str = "",
) -> None:
    """Write ``uri`` (``.html`` or ``.png``, any fsspec URI) atomically."""
    if uri.endswith(".html") or uri.endswith(".htm"):
        data = gallery_html(results, clip_ids, queries=queries, fetch=fetch, title=title).encode("utf-8")
    elif uri.endswith(".png"):
        data = gallery_png(results, clip_ids, queries=queries, fetch=fetch)
    else:
        raise UsageError(f"gallery {uri!r}: the name must end in .html or .png")
    write_bytes_atomic(uri, data)

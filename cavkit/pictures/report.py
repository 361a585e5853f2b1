"""Run reports: training curves from TensorBoard event files, and a one-page HTML summary.

:func:`read_scalars` collects every scalar series under a run directory (any fsspec URI; remote
event files are copied to a temporary folder first, since the TensorBoard reader wants local
files). :func:`plot_curves` draws one PNG per tag group (the part of the tag before the first
``/``). :func:`render_html` lays out the recipe, versions, final metrics, retrieval table,
curves and sample pictures in one self-contained HTML page (pictures are embedded).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec

EVENT_FILE_MARK = "tfevents"


@dataclass
class Series:
    """One scalar tag: steps and values in step order."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def last(self) -> float:
        return self.values[-1]


def _event_dirs(run_dir: str) -> tuple[Any, str, dict[str, list[str]]]:
    fs, root = fsspec.core.url_to_fs(run_dir)
    root = root.rstrip("/")
    by_dir: dict[str, list[str]] = {}
    for path in sorted(fs.find(root)):
        if EVENT_FILE_MARK in path.rsplit("/", 1)[-1]:
            by_dir.setdefault(path.rsplit("/", 1)[0], []).append(path)
    return fs, root, by_dir


def read_scalars(run_dir: str) -> dict[str, Series]:
    """Every scalar series in the event files under ``run_dir``.

    Event files in a sub-folder ``val/`` of the folder holding the other event files (e.g.
    ``<run>/tensorboard/val/``) get their tags prefixed ``val/``. When one tag
    is written more than once for a step (a resumed run), the last write wins.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fs, root, by_dir = _event_dirs(run_dir)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    base = posixpath.commonpath(list(by_dir)) if by_dir else root
    series: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="cavkit-report-") as tmp:
        for folder, files in by_dir.items():
            rel = folder[len(base) :].strip("/")
            if local:
                source = folder
            else:
                source = os.path.join(tmp, rel or "_root")
                os.makedirs(source, exist_ok=True)
                for path in files:
                    fs.get(path, os.path.join(source, path.rsplit("/", 1)[-1]))
            acc = EventAccumulator(source, size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags().get("scalars", []):
                name = f"{rel}/{tag}" if rel else tag
                points = series.setdefault(name, {})
                for event in acc.Scalars(tag):
                    points[int(event.step)] = float(event.value)
    out = {}
    for name in sorted(series):
        steps = sorted(series[name])
        out[name] = Series(steps=steps, values=[series[name][s] for s in steps])
    return out


def group_tags(tags: Sequence[str]) -> dict[str, list[str]]:
    """Group tags by their part before the first ``/`` (``train/loss`` -> ``train``; ``lr`` -> ``lr``)."""
    groups: dict[str, list[str]] = {}
    for tag in tags:
        groups.setdefault(tag.split("/", 1)[0], []).append(tag)
    return groups


#: Each subplot of a curve figure is this many inches; PNGs are drawn at :data:`CURVE_DPI`.
PANEL_INCHES = (4.0, 3.0)
CURVE_DPI = 100


def curve_png(tags: Sequence[str], scalars: Mapping[str, Series], title: str) -> bytes:
    """PNG bytes of one figure with a panel per tag (value against step), up to 3 panels a row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), dpi=CURVE_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, tag in enumerate(tags):
        ax = axes[i // cols][i % cols]
        s = scalars[tag]
        ax.plot(s.steps, s.values, marker="o" if len(s.steps) < 20 else None, markersize=3)
        ax.set_title(tag, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for j in range(len(tags), rows * cols):
        axes[j // cols][j % cols].set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=CURVE_DPI)
    return buffer.getvalue()


def plot_curves(scalars: Mapping[str, Series]) -> dict[str, bytes]:
    """One PNG per tag group: ``{"<group>.png": bytes}``."""
    return {
        f"{_safe_name(group)}.png": curve_png(tags, scalars, group) for group, tags in group_tags(list(scalars)).items()
    }


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "scalars"


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"a/b/c": value}`` for numbers and short strings."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten_metrics(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(data, (int, float, str, bool)) or data is None:
        out[prefix] = data
    return out


def metric_table(data: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """Lay out ``{row: {column: value}}`` (deeper keys joined with ``/``) as a table.

    Mappings whose values are all scalars become a single-column table. :returns: ``(columns, rows)``.
    """
    if all(not isinstance(v, Mapping) for v in data.values()):
        return ["value"], [(str(k), [v]) for k, v in data.items()]
    columns: list[str] = []
    rows = []
    for key, value in data.items():
        flat = flatten_metrics(value) if isinstance(value, Mapping) else {"value": value}
        for col in flat:
            if col not in columns:
                columns.append(col)
        rows.append((str(key), flat))
    return columns, [(name, [flat.get(c, "") for c in columns]) for name, flat in rows]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]], corner: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{_fmt(v)}</td>" for v in values) + "</tr>"
        for name, values in rows
    )
    return f"<table><tr><th>{html.escape(corner)}</th>{head}</tr>{body}</table>"


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    label = html.escape(name)
    return f'<figure><img alt="{label}" src="data:image/png;base64,{data}"><figcaption>{label}</figcaption></figure>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em}
figure{display:inline-block;margin:.5em}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.8em;color:#666}
.muted{color:#888}
"""


@dataclass
class ReportContent:
    """Everything :func:`render_html` puts on the page; absent parts say so on the page."""

    title: str
    scalars: Mapping[str, Series]
    curves: Mapping[str, bytes]
    recipe_text: str | None = None
    versions: Mapping[str, Any] | None = None
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pictures: Mapping[str, bytes] = field(default_factory=dict)


def render_html(content: ReportContent) -> str:
    """The one-page HTML report (self-contained: pictures are embedded as data URIs)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(content.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(content.title)}</h1>",
        "<h2>Final metrics</h2>",
    ]
    if content.scalars:
        rows = [
            (tag, [s.steps[-1], s.last, min(s.values), max(s.values)]) for tag, s in content.scalars.items() if s.values
        ]
        parts.append(_table(["last step", "last", "min", "max"], rows, "tag"))
    else:
        parts.append("<p class='muted'>No TensorBoard scalars found.</p>")
    parts.append("<h2>Evaluation</h2>")
    if content.results:
        for name, data in content.results.items():
            columns, rows = metric_table(data)
            parts.append(f"<h3>{html.escape(name)}</h3>" + _table(columns, rows))
    else:
        parts.append("<p class='muted'>No evaluation results found.</p>")
    parts.append("<h2>Training curves</h2>")
    parts.extend(_img(name, png) for name, png in content.curves.items())
    if not content.curves:
        parts.append("<p class='muted'>No curves.</p>")
    parts.append("<h2>Sample pictures</h2>")
    parts.extend(_img(name, png) for name, png in content.pictures.items())
    if not content.pictures:
        parts.append("<p class='muted'>No pictures in the run directory.</p>")
    parts.append("<h2>Recipe</h2>")
    parts.append(
        f"<pre>{html.escape(content.recipe_text)}</pre>"
        if content.recipe_text
        else "<p class='muted'>No recipe found.</p>"
    )
    parts.append("<h2>Versions</h2>")
    if content.versions:
        parts.append(
            _table(
                ["value"],
                [
                    (k, [json.dumps(v) if not isinstance(v, str) else v])
                    for k, v in flatten_metrics(content.versions).items()
                ],
            )
        )
    else:
        parts.append("<p class='muted'>No version record found.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- a cavkit run directory (see cavkit.engine.run_dir) ---------------------------------------------
#: Report files go here inside the run directory unless another folder is given.
REPORT_DIR = "report"
#: At most this many sample pictures are embedded.
MAX_PICTURES = 12


def _read_text(fs: Any, path: str) -> str | None:
    return fs.cat_file(path).decode("utf-8") if fs.exists(path) else None


#: ``metrics.jsonl`` record kinds that are bookkeeping, not evaluation results.
NOT_EVALUATION = ("train", "epoch")


def evaluation_results(metrics_jsonl: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """The last record of each evaluation kind (not ``train``/``epoch``) in ``metrics.jsonl``, as tables.

    A record ``{"kind": "eval", "step": 9, "retrieval/audio/R1": 0.4, ...}`` becomes table ``eval
    (step 9)`` with a row per key prefix (``retrieval/audio``) and a column per last key part (``R1``).
    """
    last: dict[str, dict[str, Any]] = {}
    for line in (metrics_jsonl or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind", "train") not in NOT_EVALUATION:
            last[str(record["kind"])] = record
    tables = {}
    for kind, record in last.items():
        rows: dict[str, dict[str, Any]] = {}
        for key, value in flatten_metrics(
            {k: v for k, v in record.items() if k not in ("kind", "step", "time")}
        ).items():
            row, _, col = key.rpartition("/")
            rows.setdefault(row or kind, {})[col] = value
        tables[f"{kind} (step {record.get('step', '?')})"] = rows
    return tables


def collect_report(run_dir: str, *, report_dir: str | None = None) -> ReportContent:
    """Gather what a run directory holds: scalars, curves, recipe, versions, results, pictures.

    Missing parts are simply absent (a run that crashed early still gets a report); a folder that
    is not a run directory at all (no recipe, manifest, metrics or event files) is a usage error.
    """
    from cavkit.errors import UsageError

    fs, root = fsspec.core.url_to_fs(run_dir)
    root = root.rstrip("/")
    if not fs.isdir(root):
        raise UsageError(f"{run_dir}: not a folder; pass the run directory that `cavkit train` wrote")
    recipe_text = _read_text(fs, f"{root}/recipe.yaml")
    manifest_text = _read_text(fs, f"{root}/manifest.json")
    metrics_text = _read_text(fs, f"{root}/metrics.jsonl")
    scalars = read_scalars(run_dir)
    if recipe_text is None and manifest_text is None and metrics_text is None and not scalars:
        raise UsageError(
            f"{run_dir}: no recipe.yaml, manifest.json, metrics.jsonl or TensorBoard events; is this a run directory?"
        )
    versions = None
    if manifest_text:
        try:
            manifest = json.loads(manifest_text)
            versions = {k: manifest[k] for k in ("versions", "torch", "python", "platform", "created") if k in manifest}
            if manifest.get("starts"):
                versions["starts"] = len(manifest["starts"])
        except json.JSONDecodeError:
            versions = {"manifest.json": "unreadable"}
    skip = (report_dir or f"{root}/{REPORT_DIR}").rstrip("/")
    skip = fsspec.core.url_to_fs(skip)[1].rstrip("/")
    pictures = {}
    for path in sorted(fs.find(root)):
        if path.lower().endswith(".png") and not path.startswith(skip + "/") and len(pictures) < MAX_PICTURES:
            pictures[path[len(root) + 1 :]] = fs.cat_file(path)
    return ReportContent(
        title=f"cavkit run {root.rsplit('/', 1)[-1]}",
        scalars=scalars,
        curves=plot_curves(scalars) if scalars else {},
        recipe_text=recipe_text,
        versions=versions,
        results=evaluation_results(metrics_text),
        pictures=pictures,
    )


def write_report(run_dir: str, out_dir: str | None = None) -> dict[str, str]:
    """Write ``curves/<group>.png`` and ``index.html`` to ``out_dir`` (default ``<run_dir>/report``).

    :returns: ``{"html": uri, "curves": [uris...]}``-style mapping of what was written.
    """
    from cavkit.io import join, write_bytes_atomic

    out_dir = out_dir or join(run_dir, REPORT_DIR)
    content = collect_report(run_dir, report_dir=out_dir)
    written = {}
    for name, png in content.curves.items():
        uri = join(out_dir, "curves", name)
        write_bytes_atomic(uri, png)
        written[f"curves/{name}"] = uri
    html_uri = join(out_dir, "index.html")
    write_bytes_atomic(html_uri, render_html(content).encode("utf-8"))
    written["index.html"] = html_uri
    return written

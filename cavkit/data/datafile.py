"""The published datafile JSON, label CSV and class-balancing weights (spec §6.1). No torch here.

Datafile: ``{"data": [{"video_id", "wav", "video_path", "labels": "mid1,mid2"}, ...]}``. Frames are
``<video_path>/frame_<i>/<video_id>.jpg``. Relative ``wav`` / ``video_path`` values are resolved
against the datafile's folder (the published files use absolute paths, which pass unchanged).
"""

from __future__ import annotations

import csv
import io
import json

import attrs
import numpy as np

from cavkit.data import storage
from cavkit.errors import DataError


@attrs.frozen
class Clip:
    """One datafile entry with resolved URIs."""

    video_id: str
    wav: str
    video_path: str
    labels: tuple[str, ...] = ()

    def frame_uri(self, index: int) -> str:
        return storage.join(self.video_path, f"frame_{index}", f"{self.video_id}.jpg")


def load_datafile(uri: str, *, limit: int | None = None) -> list[Clip]:
    """Read a datafile; ``limit`` keeps the first n entries (Sync's ``num_samples``)."""
    entries, base = read_datafile_entries(uri, limit=limit)
    return [clip_from_entry(entry, base, i, uri) for i, entry in enumerate(entries)]


def read_datafile_entries(uri: str, *, limit: int | None = None) -> tuple[list[dict], str]:
    """The raw entries of a datafile (the first ``limit``) and the folder relative paths resolve against."""
    try:
        raw = storage.read_bytes(uri)
    except FileNotFoundError:
        raise DataError(f"datafile {uri} does not exist; create one with `cavkit prepare`") from None
    try:
        entries = json.loads(raw)["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"datafile {uri} is not a datafile JSON with a 'data' list ({exc})") from None
    return (entries[:limit] if limit is not None else entries), storage.parent(uri)


def clip_from_entry(entry: dict, base: str, index: int, uri: str) -> Clip:
    """Entry ``index`` of datafile ``uri`` as a :class:`Clip` with paths resolved against ``base``."""
    try:
        labels = tuple(s for s in str(entry.get("labels", "")).split(",") if s)
        return Clip(
            video_id=str(entry["video_id"]),
            wav=storage.resolve(str(entry["wav"]), base),
            video_path=storage.resolve(str(entry.get("video_path", "")), base),
            labels=labels,
        )
    except KeyError as exc:
        raise DataError(f"datafile {uri}: entry {index} lacks the key {exc.args[0]!r}") from None


class ClipTable:
    """A read-only sequence of :class:`Clip` stored as fixed-width byte arrays.

    A list of a million small Python objects is copied page by page into every DataLoader worker as
    reference counts change ("copy-on-read", pytorch/pytorch#13246); numpy byte arrays are not, so
    AudioSet-sized datafiles keep one copy of their metadata. ``table[i]`` builds the Clip.
    """

    def __init__(self, clips: list[Clip]):
        def column(values: list[str]) -> np.ndarray:
            return np.array([v.encode("utf-8") for v in values], dtype=bytes) if values else np.array([], dtype="S1")

        self._ids = column([c.video_id for c in clips])
        self._wavs = column([c.wav for c in clips])
        self._paths = column([c.video_path for c in clips])
        self._labels = column([",".join(c.labels) for c in clips])

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> Clip:
        labels = self._labels[index].decode("utf-8")
        return Clip(
            self._ids[index].decode("utf-8"),
            self._wavs[index].decode("utf-8"),
            self._paths[index].decode("utf-8"),
            tuple(labels.split(",")) if labels else (),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def clip_to_entry(clip: Clip) -> dict[str, str]:
    return {"video_id": clip.video_id, "wav": clip.wav, "video_path": clip.video_path, "labels": ",".join(clip.labels)}


def write_datafile(uri: str, clips: list[Clip]) -> None:
    storage.write_text_atomic(uri, json.dumps({"data": [clip_to_entry(c) for c in clips]}, indent=1))


@attrs.frozen
class LabelMap:
    """The label CSV: ``index,mid,display_name``; ``mids[i]`` is class i."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.mids)

    def index(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.mids)}


def load_label_csv(uri: str) -> LabelMap:
    """Read ``index,mid,display_name``; class order follows ``index``."""
    try:
        text = storage.read_bytes(uri).decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"label CSV {uri} does not exist") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"index", "mid"} <= set(rows[0]):
        raise DataError(f"label CSV {uri} needs the header 'index,mid,display_name'")
    rows.sort(key=lambda r: int(r["index"]))
    return LabelMap(tuple(r["mid"] for r in rows), tuple(r.get("display_name") or r["mid"] for r in rows))


def write_label_csv(uri: str, labels: LabelMap) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "mid", "display_name"])
    for i, (mid, name) in enumerate(zip(labels.mids, labels.names)):
        writer.writerow([i, mid, name])
    storage.write_text_atomic(uri, out.getvalue())


def label_vector(labels: tuple[str, ...], index: dict[str, int], smoothing: float = 0.0, *, where: str = "") -> np.ndarray:
    """Multi-hot targets ``[C]``: every class ``ls/C``, positives ``1 - ls`` (spec §6.3)."""
    num = len(index)
    vector = np.full(num, smoothing / num, dtype=np.float32)
    for mid in labels:
        vector[_label_index(mid, index, where)] = 1.0 - smoothing
    return vector


def mixed_label_vector(labels1, labels2, index: dict[str, int], lam: float, smoothing: float = 0.0, *, where: str = "") -> np.ndarray:
    """Mixup targets: ``ls/C`` plus ``lam (1-ls)`` per label of clip 1 and ``(1-lam)(1-ls)`` per label of clip 2."""
    num = len(index)
    vector = np.full(num, smoothing / num, dtype=np.float64)
    for mid in labels1:
        vector[_label_index(mid, index, where)] += lam * (1.0 - smoothing)
    for mid in labels2:
        vector[_label_index(mid, index, where)] += (1.0 - lam) * (1.0 - smoothing)
    return vector.astype(np.float32)


def _label_index(mid: str, index: dict[str, int], where: str) -> int:
    try:
        return index[mid]
    except KeyError:
        raise DataError(f"{where}label {mid!r} is not in the label CSV") from None


def sample_weights(clips: list[Clip], labels: LabelMap) -> np.ndarray:
    """Class-balancing weights ``[N]`` (published ``gen_weight_file.py``).

    count_c = clips carrying label c; weight_c = 1000 / (count_c + 0.01); a clip's weight is the
    sum over its labels. Feed to ``WeightedRandomSampler(weights, len(weights), replacement=True)``.
    """
    index = labels.index()
    counts = np.zeros(labels.num_classes)
    for clip in clips:
        for mid in clip.labels:
            counts[_label_index(mid, index, f"clip {clip.video_id!r}: ")] += 1
    per_label = 1000.0 / (counts + 0.01)
    return np.array([sum(per_label[index[m]] for m in clip.labels) for clip in clips], dtype=np.float64)


def weights_uri(datafile_uri: str) -> str:
    """The published weight-file name: ``<datafile minus .json>_weight.csv``."""
    stem = datafile_uri[: -len(".json")] if datafile_uri.endswith(".json") else datafile_uri
    return stem + "_weight.csv"


def write_weights(uri: str, weights: np.ndarray) -> None:
    storage.write_text_atomic(uri, "".join(f"{w:.18e}\n" for w in weights))


def load_weights(uri: str, expected: int) -> np.ndarray:
    try:
        text = storage.read_bytes(uri).decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"sample-weight file {uri} does not exist") from None
    weights = np.array([float(line) for line in text.split() if line.strip()], dtype=np.float64)
    if len(weights) != expected:
        raise DataError(f"sample-weight file {uri} has {len(weights)} values for {expected} clips")
    return weights

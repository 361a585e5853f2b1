"""``cavkit prepare``: videos -> 16 kHz mono wav + N frames + datafile (+ labels, weights, shards).

Output layout under ``OUT`` (the published one, spec §6.1-6.2)::

    OUT/audio/<id>.wav                 16 kHz mono PCM16 (channel 0 of the source)
    OUT/frames/frame_<i>/<id>.jpg      224x224 (Resize short side bilinear, CenterCrop, JPEG q75)
    OUT/datafile.json                  {"data": [{video_id, wav, video_path, labels}, ...]}
    OUT/labels.csv                     index,mid,display_name         (given labels)
    OUT/datafile_weight.csv            class-balancing sample weights (given labels)
    OUT/prepare_report.json            prepared / skipped / failed with reasons, per-clip notes
    OUT/prepare_settings.json          frames, frame method and image size the clips were made with
    OUT/shards/shard-000000.tar        optional WebDataset-style shards (cavkit.data.shards)

Resumable and atomic: every file is written under a temporary name and renamed; a clip's frames
are written before its wav, so a clip counts as done only when its wav and all its frames exist. A
killed run leaves at worst some frames without a wav, which the next run redoes. A re-run with other
frame or image settings is refused (``--overwrite`` redoes every clip) instead of skipping clips that
were made differently. Files cut short (header declares more than the decoder finds) fail as
``truncated``; saved frames that repeat the stream's last frame are noted per clip in the report.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import json
import multiprocessing
import os
import posixpath
from collections import Counter

import attrs

from cavkit.data import datafile as df
from cavkit.data import storage
from cavkit.data.audio import SAMPLE_RATE
from cavkit.data.images import encode_jpeg, resize_center_crop
from cavkit.data.video import (
    VideoError,
    check_not_truncated,
    declared_seconds,
    decode_frames,
    extract_audio,
    frame_count_and_rate,
    frame_indices,
    open_container,
    wav_bytes,
)
from cavkit.errors import UsageError
from cavkit.io_errors import OutputWriteError

#: Records what the clips under OUT were made with (see :func:`claim_settings`).
SETTINGS_FILE = "prepare_settings.json"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


@attrs.frozen(kw_only=True)
class PrepareOptions:
    """What ``cavkit prepare`` writes; see the module docstring."""

    out: str
    num_frames: int = 10
    frame_method: str = "cavmae"
    image_size: int = 224
    min_seconds: float = 1.0
    relative_paths: bool = False
    overwrite: bool = False


@attrs.frozen
class ClipResult:
    """One video's outcome: ``status`` is prepared / skipped (already done) / failed.

    ``note`` flags a prepared clip that is usable but not as the metadata promised (frames that
    repeat the stream's last frame).
    """

    video_id: str
    source: str
    status: str
    reason: str = ""
    note: str = ""


@attrs.frozen
class Summary:
    results: list[ClipResult]
    notes: list[str] = attrs.field(factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def failures(self) -> list[ClipResult]:
        return [r for r in self.results if r.status == "failed"]

    def noted(self) -> list[ClipResult]:
        return [r for r in self.results if r.note]

    def lines(self) -> list[str]:
        lines = [f"prepared {self.count('prepared')}, skipped {self.count('skipped')} (already done), failed {self.count('failed')}"]
        by_reason = Counter(r.reason.split(":")[0] for r in self.failures())
        for reason, n in by_reason.most_common():
            lines.append(f"  failed ({reason}): {n}")
        for r in self.failures()[:20]:
            lines.append(f"    {r.video_id}: {r.reason}  [{r.source}]")
        if len(self.failures()) > 20:
            lines.append(f"    ... {len(self.failures()) - 20} more in prepare_report.json")
        noted = self.noted()
        if noted:
            lines.append(f"  prepared with a note: {len(noted)} (clip_notes in prepare_report.json)")
            lines += [f"    {r.video_id}: {r.note}" for r in noted[:5]]
        return lines + self.notes


# -- inputs -------------------------------------------------------------------------------------------
def list_videos(inputs: list[str]) -> list[str]:
    """Expand folders (recursively), list files (one URI per line) and globs into video URIs."""
    videos: list[str] = []
    for item in inputs:
        fs, path = storage.filesystem(item)
        protocol = item.split("://")[0] + "://" if "://" in item else ""
        if any(ch in path for ch in "*?["):
            videos += [_with_protocol(fs, p, protocol) for p in sorted(fs.glob(path))]
        elif fs.isdir(path):
            found = [p for p in fs.find(path) if p.lower().endswith(VIDEO_EXTENSIONS)]
            if not found:
                raise UsageError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {item}")
            videos += [_with_protocol(fs, p, protocol) for p in sorted(found)]
        elif path.lower().endswith(LIST_EXTENSIONS):
            base = storage.parent(item)
            text = storage.read_bytes(item).decode("utf-8")
            videos += [storage.resolve(line.strip(), base) for line in text.splitlines() if line.strip() and not line.startswith("#")]
        elif fs.exists(path):
            videos.append(item)
        else:
            raise UsageError(f"input {item} does not exist (give a folder, a list file, a video or a glob)")
    return videos


def _with_protocol(fs, path: str, protocol: str) -> str:
    return path if not protocol else fs.unstrip_protocol(path)


def video_id_of(uri: str) -> str:
    """The published id: the file name without its extension."""
    name = posixpath.basename(uri.rstrip("/")) if storage.has_protocol(uri) else os.path.basename(uri)
    return os.path.splitext(name)[0]


def load_label_table(uri: str) -> dict[str, tuple[str, ...]]:
    """``video_id -> labels`` from a CSV with columns ``video_id,labels`` (labels comma-separated)."""
    text = storage.read_bytes(uri).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"video_id", "labels"} <= set(rows[0]):
        raise UsageError(f"label table {uri} needs the header 'video_id,labels' (labels quoted, comma-separated)")
    return {r["video_id"]: tuple(s.strip() for s in r["labels"].split(",") if s.strip()) for r in rows}


# -- one clip ------------------------------------------------------------------------------------------
def clip_paths(out: str, video_id: str, num_frames: int) -> tuple[str, list[str]]:
    wav = storage.join(out, "audio", f"{video_id}.wav")
    frames = [storage.join(out, "frames", f"frame_{i}", f"{video_id}.jpg") for i in range(num_frames)]
    return wav, frames


def is_done(out: str, video_id: str, num_frames: int) -> bool:
    wav, frames = clip_paths(out, video_id, num_frames)
    return all(storage.exists(p) for p in [wav, *frames])


def prepare_clip(source: str, options: PrepareOptions) -> ClipResult:
    """Decode one video and write its wav and frames (frames first, wav last)."""
    video_id = video_id_of(source)
    if not options.overwrite and is_done(options.out, video_id, options.num_frames):
        return ClipResult(video_id, source, "skipped")
    try:
        data = source if storage.is_local(source) else io.BytesIO(storage.read_bytes(source))
        with open_container(data) as container:
            samples = extract_audio(container)
            # only the audio stream's own duration: audio may legitimately end before the video
            check_not_truncated("audio", len(samples) / SAMPLE_RATE, declared_seconds(container.streams.audio[0]))
        if len(samples) < options.min_seconds * SAMPLE_RATE:
            raise VideoError("too short", f"{len(samples) / SAMPLE_RATE:.2f} s of audio, need {options.min_seconds} s")
        if isinstance(data, io.BytesIO):
            data.seek(0)
        with open_container(data) as container:
            if not container.streams.video:
                raise VideoError("no video track")
            count, fps = frame_count_and_rate(container.streams.video[0], container)
            wanted = frame_indices(count, fps, options.num_frames, options.frame_method)
            decoded = decode_frames(container, wanted)
    except VideoError as exc:
        return ClipResult(video_id, source, "failed", str(exc))
    except FileNotFoundError as exc:
        return ClipResult(video_id, source, "failed", f"missing: {exc}")
    except Exception as exc:  # a corrupt file can raise anything inside the decoder; report it, do not stop the run
        return ClipResult(video_id, source, "failed", f"undecodable: {type(exc).__name__}: {exc}")
    wav, frame_uris = clip_paths(options.out, video_id, options.num_frames)
    for image, uri in zip(decoded.images, frame_uris):
        storage.write_bytes_atomic(uri, encode_jpeg(resize_center_crop(image, options.image_size)))
    storage.write_bytes_atomic(wav, wav_bytes(samples))
    note = ""
    if decoded.repeated:
        note = (f"{decoded.repeated} of {options.num_frames} frames repeat the last decoded frame "
                f"(the metadata promised {count} frames)")
    return ClipResult(video_id, source, "prepared", note=note)


def _prepare_clip_star(args):
    return prepare_clip(*args)


# -- settings of a prepared folder --------------------------------------------------------------------
def clip_settings(options: PrepareOptions) -> dict:
    """What a clip's files depend on besides its video: frame count and positions, image size."""
    return {"num_frames": options.num_frames, "frame_method": options.frame_method, "image_size": options.image_size}


def recorded_settings(out: str) -> dict | None:
    """The settings the clips under ``out`` were made with, or ``None`` for a new folder.

    Folders prepared before ``prepare_settings.json`` existed fall back to ``prepare_report.json``,
    which records the frame count and method (not the image size).
    """
    for name, keys in ((SETTINGS_FILE, None), ("prepare_report.json", ("num_frames", "frame_method"))):
        uri = storage.join(out, name)
        if not storage.exists(uri):
            continue
        try:
            recorded = json.loads(storage.read_bytes(uri))
        except ValueError as exc:
            recorded = f"not JSON: {exc}"
        if not isinstance(recorded, dict):
            detail = recorded if isinstance(recorded, str) else "not a JSON object"
            raise UsageError(f"{uri} is unreadable ({detail}); delete it and prepare with --overwrite")
        return recorded if keys is None else {k: recorded[k] for k in keys if k in recorded}
    return None


def claim_settings(options: PrepareOptions, *, finished: bool = False) -> None:
    """Refuse to mix clips made with other settings into ``options.out``; record this run's settings.

    Without ``--overwrite``, a folder whose clips were made with another frame count, frame method or
    image size is refused (skipping its clips as "already done" would hand out frames of the wrong
    size or positions). ``--overwrite`` redoes every clip; until such a run ends, the record says so,
    and a later run without ``--overwrite`` is refused rather than skipping clips it cannot tell apart.
    """
    wanted = clip_settings(options)
    uri = storage.join(options.out, SETTINGS_FILE)
    if not finished and not options.overwrite:
        recorded = recorded_settings(options.out) or {}
        if recorded.get("overwrite_unfinished"):
            raise UsageError(
                f"{options.out}: a run with --overwrite was interrupted there, so some clips may have been made "
                "with the previous settings; finish it by running again with --overwrite"
            )
        changed = [key for key in wanted if key in recorded and recorded[key] != wanted[key]]
        if changed:
            had = ", ".join(f"{key} {recorded[key]}" for key in changed)
            asked = ", ".join(f"{key} {wanted[key]}" for key in changed)
            raise UsageError(
                f"{options.out} holds clips prepared with {had}; this run asks for {asked}. "
                "Prepare into another --out, or add --overwrite to redo every clip"
            )
    storage.write_text_atomic(uri, json.dumps({**wanted, "overwrite_unfinished": options.overwrite and not finished}, indent=1))


# -- the run ------------------------------------------------------------------------------------------
def prepare(
    inputs: list[str],
    options: PrepareOptions,
    *,
    labels: dict[str, tuple[str, ...]] | None = None,
    label_names: df.LabelMap | None = None,
    workers: int = 1,
    progress: bool = True,
    shard_size: int = 0,
) -> Summary:
    """Prepare every input video; write the datafile (and labels, weights, shards); return the summary."""
    from tqdm import tqdm

    sources = list_videos(inputs)
    if not sources:
        raise UsageError("no input videos")
    if not storage.has_protocol(options.out):
        # the datafile's relative paths are read against the datafile's folder, not the cwd
        options = attrs.evolve(options, out=os.path.abspath(options.out))
    storage.makedirs(options.out)
    claim_settings(options)
    results: dict[int, ClipResult] = {}
    seen: dict[str, int] = {}
    todo = []
    for i, source in enumerate(sources):
        video_id = video_id_of(source)
        if video_id in seen:
            results[i] = ClipResult(video_id, source, "failed", f"duplicate video id: same name as {sources[seen[video_id]]}")
            continue
        seen[video_id] = i
        todo.append(i)
    bar = tqdm(total=len(todo), desc="prepare", unit="clip", disable=not progress)
    if workers <= 1:
        for i in todo:
            results[i] = prepare_clip(sources[i], options)
            bar.update()
    else:
        local = storage.is_local(options.out) and all(storage.is_local(sources[i]) for i in todo)
        # memory:// lives inside one process, so non-local storage uses threads; local uses processes.
        # fork starts workers instantly; they only run PyAV/PIL code (no torch), so it is safe here.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) if local else cf.ThreadPoolExecutor(workers)
        with pool:
            futures = {pool.submit(prepare_clip, sources[i], options): i for i in todo}
            for future in cf.as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except OutputWriteError:  # a full or read-only output stops every clip: stop at once
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                except Exception as exc:  # a decoder crash kills its worker process; report, keep going
                    results[i] = ClipResult(video_id_of(sources[i]), sources[i], "failed", f"worker crashed: {type(exc).__name__}: {exc}")
                bar.update()
    bar.close()
    if options.overwrite:
        claim_settings(options, finished=True)
    summary = Summary([results[i] for i in range(len(sources))])
    summary.notes.extend(write_outputs(summary, options, labels=labels, label_names=label_names))
    if shard_size:
        from cavkit.data.shards import write_shards

        write_shards(storage.join(options.out, "datafile.json"), storage.join(options.out, "shards"), shard_size=shard_size, num_frames=options.num_frames)
    return summary


def write_outputs(summary: Summary, options: PrepareOptions, *, labels=None, label_names=None) -> list[str]:
    """The datafile (every done clip, input order), label CSV, weights and the report; returns notes."""
    notes = []
    out = options.out
    done = [r for r in summary.results if r.status in ("prepared", "skipped")]
    clips = []
    for r in done:
        wav, _ = clip_paths(out, r.video_id, options.num_frames)
        frames_dir = storage.join(out, "frames")
        if options.relative_paths:
            wav, frames_dir = f"audio/{r.video_id}.wav", "frames"
        clip_labels = tuple(labels.get(r.video_id, ())) if labels else ()
        clips.append(df.Clip(r.video_id, wav, frames_dir, clip_labels))
    datafile_uri = storage.join(out, "datafile.json")
    df.write_datafile(datafile_uri, clips)
    if labels:
        if label_names is None:
            mids = sorted({m for c in clips for m in c.labels})
            label_names = df.LabelMap(tuple(mids), tuple(mids))
        missing = sorted({m for c in clips for m in c.labels} - set(label_names.mids))
        if missing:
            raise UsageError(f"labels {missing[:5]} are not in the label names CSV")
        df.write_label_csv(storage.join(out, "labels.csv"), label_names)
        df.write_weights(df.weights_uri(datafile_uri), df.sample_weights(clips, label_names))
        unlabeled = [c.video_id for c in clips if not c.labels]
        if unlabeled:
            notes.append(f"warning: {len(unlabeled)} prepared clips have no labels in the label table (sample weight 0), e.g. {unlabeled[0]}")
    report = {
        "prepared": summary.count("prepared"),
        "skipped": summary.count("skipped"),
        "failed": [attrs.asdict(r) for r in summary.failures()],
        "clip_notes": [{"video_id": r.video_id, "source": r.source, "note": r.note} for r in summary.noted()],
        "num_frames": options.num_frames,
        "frame_method": options.frame_method,
        "image_size": options.image_size,
        "notes": notes,
    }
    storage.write_text_atomic(storage.join(out, "prepare_report.json"), json.dumps(report, indent=1))
    return notes

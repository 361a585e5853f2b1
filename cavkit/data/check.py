"""``cavkit data check``: how much of a datafile is actually there and readable (no torch).

Audio counts as ``ok`` only when it decodes whole, its WAV header does not declare more samples
than the file holds (``truncated``), and it holds at least one kaldi window, 400 samples at 16 kHz,
which training requires (``too short``).
"""

from __future__ import annotations

import concurrent.futures as cf
import io
from collections import Counter

import attrs
from PIL import Image

from cavkit.data import datafile as df
from cavkit.data import storage
from cavkit.data.audio import MIN_SAMPLES, AudioDecodeError, TruncatedAudioError, decode_audio, samples_at_16k

#: Every status a file can get, in report order.
STATUSES = ("ok", "missing", "empty", "truncated", "too short", "unreadable")


class _TooShort(Exception):
    pass


def _file_status(uri: str, decode, unreadable: type[Exception] | tuple[type[Exception], ...]) -> str:
    """``ok``, ``missing``, ``empty``, ``truncated``, ``too short`` or ``unreadable``.

    ``decode(bytes)`` raises ``unreadable`` for data it cannot use, :class:`TruncatedAudioError`
    for a file cut short and :class:`_TooShort` for one too short to use.
    """
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if not data:
        return "empty"
    try:
        decode(data)
    except TruncatedAudioError:
        return "truncated"
    except _TooShort:
        return "too short"
    except unreadable:
        return "unreadable"
    return "ok"


def _decode_image(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def _decode_usable_audio(data: bytes) -> None:
    """Decode the whole file; it must hold one kaldi window (400 samples at 16 kHz), as training needs."""
    waveform, rate = decode_audio(data)
    if samples_at_16k(waveform.shape[1], rate) < MIN_SAMPLES:
        raise _TooShort


def audio_status(uri: str) -> str:
    """``ok``, ``missing``, ``empty``, ``truncated``, ``too short`` or ``unreadable`` (decodes the whole file)."""
    return _file_status(uri, _decode_usable_audio, AudioDecodeError)


def frame_status(uri: str) -> str:
    """``ok``, ``missing``, ``empty`` or ``unreadable`` (PIL decodes the image)."""
    return _file_status(uri, _decode_image, Exception)


@attrs.define
class CheckReport:
    datafile: str
    num_frames: int
    clips: int = 0
    audio: Counter = attrs.field(factory=Counter)
    frames: Counter = attrs.field(factory=Counter)
    frames_by_index: dict[int, Counter] = attrs.field(factory=dict)
    usable_cav_mae: int = 0
    usable_sync: int = 0
    bad_clips: list[tuple[str, str]] = attrs.field(factory=list)

    @property
    def all_ok(self) -> bool:
        return self.audio["ok"] == self.clips and self.frames["ok"] == self.clips * self.num_frames

    def as_dict(self) -> dict:
        return {
            "datafile": self.datafile,
            "clips": self.clips,
            "audio": dict(self.audio),
            "frames": dict(self.frames),
            "frames_by_index": {i: dict(c) for i, c in sorted(self.frames_by_index.items())},
            "usable_cav_mae": self.usable_cav_mae,
            "usable_cav_mae_sync": self.usable_sync,
            "bad_clips": [{"video_id": v, "problem": p} for v, p in self.bad_clips],
        }

    def lines(self) -> list[str]:
        def fmt(counter: Counter) -> str:
            return ", ".join(f"{k} {counter[k]}" for k in STATUSES if counter[k] or k == "ok")

        out = [f"{self.datafile}: {self.clips} clips", f"  audio:  {fmt(self.audio)}", f"  frames ({self.num_frames} per clip): {fmt(self.frames)}"]
        short = [i for i, c in sorted(self.frames_by_index.items()) if c["ok"] < self.clips]
        for i in short[:16]:
            out.append(f"    frame_{i}: {fmt(self.frames_by_index[i])}")
        out.append(f"  usable for cav_mae (audio + frames 0-{min(self.num_frames, 10) - 1}): {self.usable_cav_mae}")
        if self.num_frames >= 16:
            out.append(f"  usable for cav_mae_sync (audio + frames 0-15): {self.usable_sync}")
        for video_id, problem in self.bad_clips[:10]:
            out.append(f"    {video_id}: {problem}")
        if len(self.bad_clips) > 10:
            out.append(f"    ... {len(self.bad_clips) - 10} more (use --json)")
        return out


def _check_clip(clip: df.Clip, num_frames: int) -> tuple[str, list[str]]:
    return audio_status(clip.wav), [frame_status(clip.frame_uri(i)) for i in range(num_frames)]


def check_datafile(uri: str, *, num_frames: int = 16, workers: int = 8) -> CheckReport:
    """Read every audio file and frame the datafile names; count what is missing or unreadable."""
    clips = df.load_datafile(uri)
    report = CheckReport(uri, num_frames, clips=len(clips))
    with cf.ThreadPoolExecutor(max(1, workers)) as pool:
        for clip, (audio, frames) in zip(clips, pool.map(lambda c: _check_clip(c, num_frames), clips)):
            report.audio[audio] += 1
            for i, status in enumerate(frames):
                report.frames[status] += 1
                report.frames_by_index.setdefault(i, Counter())[status] += 1
            if audio == "ok" and all(s == "ok" for s in frames[:10]):
                report.usable_cav_mae += 1
            if audio == "ok" and len(frames) >= 16 and all(s == "ok" for s in frames[:16]):
                report.usable_sync += 1
            problems = ([f"audio {audio} ({clip.wav})"] if audio != "ok" else []) + [
                f"frame_{i} {s}" for i, s in enumerate(frames) if s != "ok"
            ]
            if problems:
                report.bad_clips.append((clip.video_id, "; ".join(problems)))
    return report

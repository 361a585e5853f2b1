"""Reading videos with PyAV: 16 kHz mono audio and frames at the published positions (spec §6.2).

No ffmpeg/sox binaries: PyAV (libav* inside the wheel) decodes, ``AudioResampler`` converts to 16 kHz
signed 16-bit (the published ``ffmpeg -ar 16000`` step) keeping every channel, and channel 0 is kept
(the published ``sox remix 1``). Frames are decoded in order and the wanted indices are kept.
No torch here: ``cavkit prepare`` workers stay light.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from typing import BinaryIO

import attrs
import numpy as np

from cavkit.data.audio import SAMPLE_RATE

#: Seconds the published frame extractor covers: N = min(frame count, int(fps * 10)).
FRAME_SPAN_SECONDS = 10


class VideoError(Exception):
    """A video that cannot be prepared; ``reason`` is a short category for the summary."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def open_container(source: str | BinaryIO):
    import av

    try:
        return av.open(source, "r")
    except Exception as exc:  # InvalidDataError, FileNotFoundError wrapped by PyAV, ...
        raise VideoError("undecodable", f"cannot open container ({exc})") from exc


def extract_audio(container) -> np.ndarray:
    """Channel 0 of the first audio stream as int16 ``[samples]`` at 16 kHz."""
    import av

    if not container.streams.audio:
        raise VideoError("no audio track")
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="s16p", rate=SAMPLE_RATE)
    chunks = []
    try:
        for frame in container.decode(stream):
            frame.pts = None  # let the resampler count samples itself (odd/missing timestamps)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray()[0])
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray()[0])
    except av.error.FFmpegError as exc:
        raise VideoError("undecodable", f"audio stream ({exc})") from exc
    if not chunks:
        raise VideoError("undecodable", "the audio track holds no samples")
    return np.ascontiguousarray(np.concatenate(chunks).astype(np.int16))


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """A mono PCM16 WAV file of int16 ``samples``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


#: Decoded media may end this much before the declared duration before a clip counts as truncated
#: (codec priming, edit lists and rounding move the end by milliseconds on intact files).
TRUNCATION_TOLERANCE_SECONDS = 0.25
TRUNCATION_TOLERANCE_FRACTION = 0.02


def declared_seconds(stream) -> float | None:
    """How long the file says ``stream`` lasts, in seconds; ``None`` when it does not say (often in MKV/WebM).

    Only the stream's own duration: the container's is the longest stream's, and audio and video
    of an intact file may differ in length.
    """
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def check_not_truncated(what: str, decoded: float, declared: float | None) -> None:
    """Raise ``VideoError("truncated")`` when ``decoded`` seconds fall clearly short of ``declared``.

    A file cut short (an interrupted download or copy) often still opens: its header declares the
    full length but the decoder runs out early. Intact files end within milliseconds of what they
    declare, so a gap above ``max(0.25 s, 2 %)`` is damage, not rounding.
    """
    if declared is None:
        return
    tolerance = max(TRUNCATION_TOLERANCE_SECONDS, TRUNCATION_TOLERANCE_FRACTION * declared)
    if declared - decoded > tolerance:
        raise VideoError(
            "truncated",
            f"the {what} ends at {decoded:.2f} s but the file declares {declared:.2f} s "
            "(an interrupted download or copy?); fetch the file again",
        )


def frame_count_and_rate(stream, container=None) -> tuple[int, float]:
    """``(frame count, fps)`` as the published OpenCV extractor saw them (container metadata).

    Like OpenCV's FFmpeg backend: fps = average frame rate (else the stream's base rate); count =
    the stream's frame count, else round(duration x fps).
    """
    fps = float(stream.average_rate or stream.base_rate or stream.guessed_rate or 0)
    count = int(stream.frames or 0)
    if count <= 0 and fps:
        if container is not None and container.duration:
            seconds = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = 0.0
        count = int(seconds * fps + 0.5)
    return count, fps


def frame_indices(count: int, fps: float, num_frames: int, method: str = "cavmae") -> list[int]:
    """Which decoded frame index each saved frame ``i`` takes (spec §6.2, quirk 15).

    ``cavmae``: N = min(count, int(fps * 10)); frame i = int(i * N / n) - 1, clamped to 0 (the
    published seek to -1 reads frame 0). ``linspace``: the Sync dev extractor's
    ``linspace(0, count - 1, n)``.
    """
    if method == "linspace":
        return [int(x) for x in np.linspace(0, max(count - 1, 0), num_frames)]
    span = min(count, int(fps * FRAME_SPAN_SECONDS)) if fps > 0 else count
    return [max(0, int(i * span / num_frames) - 1) for i in range(num_frames)]


@attrs.frozen
class DecodedFrames:
    """The saved frames of a clip and how many of them repeat the stream's last frame."""

    images: list
    #: Wanted indices past the last decoded frame; each got a copy of that frame.
    repeated: int = 0


def decode_frames(container, wanted: list[int]) -> DecodedFrames:
    """PIL RGB images for the decoded-frame indices ``wanted`` (in order, duplicates allowed).

    A clip whose metadata promised more frames than it decodes (variable frame rate, an edit list
    that hides leading frames) gets its last decoded frame for the indices past the end, counted in
    ``repeated``. When the decoded frames also end clearly before the declared duration, the file
    was cut short: ``VideoError("truncated")`` instead of copies of one frame.
    """
    import av

    if not container.streams.video:
        raise VideoError("no video track")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    targets = sorted(set(wanted))
    last_needed = targets[-1]
    found: dict[int, object] = {}
    first = last = None
    index = -1
    try:
        for index, frame in enumerate(_frames(container, stream)):
            if first is None:
                first = frame
            last = frame
            if index in targets and index not in found:
                found[index] = frame.to_image()
            if index >= last_needed:
                break
    except av.error.FFmpegError as exc:
        if not found and last is None:
            raise VideoError("undecodable", f"video stream ({exc})") from exc
    if last is None:
        raise VideoError("undecodable", "the video track holds no frames")
    repeated = sum(i not in found for i in wanted)
    if repeated:
        check_not_truncated("video", _decoded_span(first, last, stream), declared_seconds(stream))
    tail = None
    images = []
    for i in wanted:
        if i in found:
            images.append(found[i])
        else:
            tail = tail or last.to_image()
            images.append(tail)
    return DecodedFrames(images, repeated)


def _decoded_span(first, last, stream) -> float:
    """Seconds from the first decoded frame's start to the last one's end."""
    if first.time is None or last.time is None:
        return 0.0
    rate = float(stream.average_rate or stream.base_rate or 0)
    return last.time - first.time + (1.0 / rate if rate else 0.0)


def _frames(container, stream) -> Iterator:
    yield from container.decode(stream)

"""A synthetic audio-visual dataset whose sound and picture are tied, with a known right answer.

Every clip shows one object for K frames and plays its sound; the ties a model can learn:

* **content** -- the class fixes the object's shape and colour *and* the sound's timbre (pure tone,
  odd harmonics, major chord, noise band, tremolo, sawtooth, octave pair, pulse train);
* **position <-> pitch** -- the higher the object in frame k, the higher the pitch during frame k
  (300-1200 Hz, log scale); **size <-> loudness**;
* **time** -- the object is visible in frame k exactly when its sound plays in frame k's stretch of
  audio (fbank rows nearest to ``round(k * S / K)``, the position Sync's segment mapping centres on,
  :func:`cavkit.data.fbank.segment_bounds`); a few frames per clip are blank and silent.

So retrieval has a right answer beyond the class (pitch/height trajectories and on/off patterns differ
per clip) and localization has ground truth: items carry ``object_mask`` (bool ``[H,W]``, or
``[K,H,W]`` in retrieval mode) marking the object's pixels.

Audio is synthesised at 16 kHz and goes through the real pipeline (:func:`kaldi_fbank`, padding,
normalisation); images are normalised with the ImageNet statistics like real frames. Everything is
a pure function of ``(seed, split, index)``; clips are generated lazily and cached per process.
:func:`write_videos` writes clips as real mp4 files (H.264 + AAC) for ``cavkit prepare`` tests.
"""

from __future__ import annotations

import zlib

import attrs
import numpy as np
import torch
from torch.utils.data import Dataset

from cavkit.data.audio import SAMPLE_RATE
from cavkit.data.configs import SyntheticDataConfig
from cavkit.data.fbank import kaldi_fbank, normalize, pad_or_crop, segments, single_threaded
from cavkit.data.images import IMAGENET_MEAN, IMAGENET_STD

CLASS_NAMES = (
    "red circle / pure tone",
    "green square / odd harmonics",
    "blue triangle / major chord",
    "yellow diamond / noise band",
    "magenta ring / tremolo",
    "cyan cross / sawtooth",
    "orange bar / octave pair",
    "white frame / pulse train",
)
COLOURS = np.array(
    [[230, 40, 40], [40, 200, 60], [50, 90, 240], [240, 220, 40], [220, 50, 220], [40, 220, 230], [250, 140, 20], [245, 245, 245]],
    dtype=np.float32,
)
LOW_HZ, HIGH_HZ = 300.0, 1200.0


@attrs.frozen
class ClipPlan:
    """What one clip shows and plays; positions are fractions of the frame side.

    :ivar label: class index.
    :ivar height: per-frame vertical position of the centre ``[K]`` (0 = top); pitch follows 1 - height.
    :ivar across: per-frame horizontal position ``[K]``.
    :ivar visible: per-frame visibility ``[K]`` (sound on exactly when visible).
    :ivar radius: object half-size (fraction of the side); loudness grows with it.
    :ivar background: RGB background ``[3]``.
    """

    label: int
    height: np.ndarray
    across: np.ndarray
    visible: np.ndarray
    radius: float
    background: np.ndarray


def plan_clip(config: SyntheticDataConfig, index: int) -> ClipPlan:
    """The deterministic plan of clip ``index`` (a pure function of seed, split and index)."""
    rng = np.random.default_rng([config.seed, zlib.crc32(config.split.encode()), index])
    k = config.num_frames
    radius = float(rng.uniform(0.12, 0.22))
    margin = radius + 0.02
    start, end = rng.uniform(margin, 1 - margin, size=2)
    wobble = 0.08 * np.sin(2 * np.pi * (rng.uniform() + np.arange(k) / max(k, 2)))
    height = np.clip(np.linspace(start, end, k) + wobble, margin, 1 - margin)
    across = np.clip(rng.uniform(margin, 1 - margin) + np.cumsum(rng.normal(0, 0.06, size=k)), margin, 1 - margin)
    visible = rng.uniform(size=k) > 0.25
    if k > 1 and visible.sum() < max(1, k // 2):
        visible[rng.permutation(k)[: max(1, k // 2)]] = True
    if not visible.any():
        visible[:] = True
    return ClipPlan(
        label=index % config.num_classes,
        height=height,
        across=across,
        visible=visible,
        radius=radius,
        background=rng.uniform(10, 70, size=3).astype(np.float32),
    )


# -- pictures ---------------------------------------------------------------------------------------
def shape_mask(label: int, size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean ``[size,size]`` mask of class ``label``'s shape centred at (cy, cx) (fractions)."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    dy = (grid[:, None] - cy) / radius
    dx = (grid[None, :] - cx) / radius
    ay, ax = np.abs(dy), np.abs(dx)
    shape = label % 8
    if shape == 0:
        return dy**2 + dx**2 <= 1.0
    if shape == 1:
        return (ay <= 0.85) & (ax <= 0.85)
    if shape == 2:
        return (dy <= 0.8) & (dy >= -0.9) & (ax <= (dy + 0.9) * 0.6)
    if shape == 3:
        return ay + ax <= 1.0
    if shape == 4:
        r2 = dy**2 + dx**2
        return (r2 <= 1.0) & (r2 >= 0.36)
    if shape == 5:
        return ((ay <= 0.3) & (ax <= 1.0)) | ((ax <= 0.3) & (ay <= 1.0))
    if shape == 6:
        return (ay <= 0.4) & (ax <= 1.0)
    return (ay <= 0.9) & (ax <= 0.9) & ((ay >= 0.55) | (ax >= 0.55))


def render_frame(plan: ClipPlan, frame: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 RGB [size,size,3], bool mask [size,size])`` of one frame."""
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = plan.background
    if plan.visible[frame]:
        mask = shape_mask(plan.label, size, plan.height[frame], plan.across[frame], plan.radius)
        image[mask] = COLOURS[plan.label % 8]
    else:
        mask = np.zeros((size, size), dtype=bool)
    return image.astype(np.uint8), mask


# -- sounds -----------------------------------------------------------------------------------------
def pitch_hz(height: np.ndarray) -> np.ndarray:
    """Higher on screen (smaller height) -> higher pitch, log-spaced between 300 and 1200 Hz."""
    return LOW_HZ * (HIGH_HZ / LOW_HZ) ** (1.0 - height)


def num_samples(audio_length: int) -> int:
    """Samples whose kaldi fbank has exactly ``audio_length`` rows (25 ms window, 10 ms hop)."""
    return 400 + 160 * (audio_length - 1)


def frame_of_sample(n: int, audio_length: int, num_frames: int) -> np.ndarray:
    """For each sample, the frame whose segment centre (row ``round(k*S/K)``) is nearest in time."""
    rows = (np.arange(n) - 200) / 160.0  # the fbank row centred on each sample
    return np.clip(np.rint(rows * num_frames / audio_length), 0, num_frames - 1).astype(np.int64)


def synthesize_audio(plan: ClipPlan, config: SyntheticDataConfig, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 waveform at 16 kHz whose fbank has ``config.audio_length`` rows."""
    n = num_samples(config.audio_length)
    t = np.arange(n) / SAMPLE_RATE
    owner = frame_of_sample(n, config.audio_length, config.num_frames)
    # smooth the per-frame pitch over ~10 ms so the phase stays continuous
    freq = pitch_hz(plan.height)[owner]
    kernel = np.ones(160) / 160
    freq = np.convolve(np.pad(freq, 80, mode="edge"), kernel, mode="same")[80 : 80 + n]
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    gate = plan.visible[owner].astype(np.float32)
    gate = np.convolve(np.pad(gate, 40, mode="edge"), np.ones(80) / 80, mode="same")[40 : 40 + n]  # 5 ms ramps
    label = plan.label % 8
    if label == 0:
        tone = np.sin(phase)
    elif label == 1:
        tone = np.sin(phase) + np.sin(3 * phase) / 3 + np.sin(5 * phase) / 5
    elif label == 2:
        tone = np.sin(phase) + 0.8 * np.sin(1.25 * phase) + 0.7 * np.sin(1.5 * phase)
    elif label == 3:
        envelope = np.convolve(rng.normal(size=n), np.ones(40) / 40, mode="same")
        tone = 4.0 * envelope * np.sin(phase)
    elif label == 4:
        tone = np.sin(phase) * (0.55 + 0.45 * np.sin(2 * np.pi * 11.0 * t))
    elif label == 5:
        tone = sum(np.sin(h * phase) / h for h in range(1, 7))
    elif label == 6:
        tone = np.sin(phase) + 0.9 * np.sin(4 * phase)
    else:
        tone = np.sin(phase) * ((t * 25.0) % 1.0 < 0.3)
    tone = tone / (np.abs(tone).max() + 1e-8)
    loudness = 0.15 + 2.0 * (plan.radius - 0.12)
    floor = 0.003 * rng.normal(size=n)
    return (loudness * gate * tone + floor).astype(np.float32)


@attrs.frozen
class SyntheticClip:
    """A generated clip: waveform ``[samples]``, frames uint8 ``[K,H,W,3]``, masks bool ``[K,H,W]``."""

    plan: ClipPlan
    waveform: np.ndarray
    frames: np.ndarray
    masks: np.ndarray


def generate_clip(config: SyntheticDataConfig, index: int) -> SyntheticClip:
    """Generate clip ``index`` (deterministic)."""
    plan = plan_clip(config, index)
    rng = np.random.default_rng([config.seed, zlib.crc32(config.split.encode()), index, 1])
    waveform = synthesize_audio(plan, config, rng)
    rendered = [render_frame(plan, k, config.image_size) for k in range(config.num_frames)]
    frames = np.stack([r[0] for r in rendered])
    noise = rng.normal(0, 4.0, size=frames.shape)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    masks = np.stack([r[1] for r in rendered])
    return SyntheticClip(plan, waveform, frames, masks)


class SyntheticDataset(Dataset):
    """The ``synthetic`` dataset (items as :mod:`cavkit.data.datasets`, plus ground truth).

    Layouts and modes:

    * ``cav_mae``: ``audio [audio_length,128]``, ``image [3,H,W]`` of frame k (train: random, eval:
      K // 2), ``object_mask [H,W]``;
    * ``sync`` train/eval: frame k and its segment ``audio [segment_length,128]``;
    * ``sync`` retrieval: ``audio [K,L,128]``, ``image [K,3,H,W]``, ``object_mask [K,H,W]``,
      ``frame [K]``.

    Every item has ``label`` (one-hot ``[C]``), ``clip_id``, ``frame``, ``object_mask``, ``visible``
    (bool, or ``[K]``) and ``skipped`` = 0.
    """

    def __init__(self, config: SyntheticDataConfig):
        self.config = config
        self._fbanks: dict[int, torch.Tensor] = {}
        self._clips: dict[int, SyntheticClip] = {}
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        self.skipped_clips = 0

    def __len__(self) -> int:
        return self.config.num_clips

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def clip(self, index: int) -> SyntheticClip:
        """The clip's plan, frames and masks (cached; the waveform is dropped once its fbank exists)."""
        if index not in self._clips:
            self._cache(index)
        return self._clips[index]

    def fbank(self, index: int) -> torch.Tensor:
        """Normalised whole-clip fbank ``[audio_length,128]`` (computed once per clip per process)."""
        if index not in self._fbanks:
            self._cache(index)
        return self._fbanks[index]

    def _cache(self, index: int) -> None:
        clip = generate_clip(self.config, index)
        raw = pad_or_crop(kaldi_fbank(torch.from_numpy(clip.waveform), SAMPLE_RATE), self.config.audio_length)
        self._fbanks[index] = normalize(raw, self.config.mean, self.config.std)
        self._clips[index] = attrs.evolve(clip, waveform=np.empty(0, dtype=np.float32))

    def sample_weights(self) -> torch.Tensor:
        """Uniform weights (classes are balanced by construction)."""
        return torch.ones(len(self), dtype=torch.float64)

    def reset_skipped(self) -> int:
        return 0

    def image(self, clip: SyntheticClip, frame: int) -> torch.Tensor:
        pixels = torch.from_numpy(clip.frames[frame]).permute(2, 0, 1).float() / 255.0
        return (pixels - self._mean) / self._std

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        with single_threaded():
            return self._get(index)

    def _get(self, index: int) -> dict:
        cfg = self.config
        clip = self.clip(index)
        k = cfg.num_frames
        if cfg.mode == "retrieval":
            frames = list(range(k))
        elif cfg.mode == "train":
            frames = [int(torch.randint(0, k, ()).item())]
        else:
            frames = [k // 2]
        label = torch.zeros(cfg.num_classes)
        label[clip.plan.label] = 1.0
        full = self.fbank(index)
        if cfg.layout == "cav_mae":
            audio = full
        else:
            audio = segments(full, frames, k, cfg.segment_length)
        images = torch.stack([self.image(clip, f) for f in frames])
        masks = torch.from_numpy(clip.masks[frames])
        visible = torch.from_numpy(clip.plan.visible[frames])
        item = {"label": label, "clip_id": f"{cfg.split}-{index:06d}", "skipped": 0}
        if cfg.mode == "retrieval":
            return {**item, "audio": audio, "image": images, "frame": torch.tensor(frames), "object_mask": masks, "visible": visible}
        audio = audio if cfg.layout == "cav_mae" else audio[0]
        return {**item, "audio": audio, "image": images[0], "frame": frames[0], "object_mask": masks[0], "visible": bool(visible[0])}


def build_synthetic(config: SyntheticDataConfig) -> SyntheticDataset:
    """Factory of the ``synthetic`` dataset component."""
    return SyntheticDataset(config)


# -- real video files -------------------------------------------------------------------------------
def write_video(uri: str, clip: SyntheticClip, config: SyntheticDataConfig, *, fps: float = 10.0, audio_rate: int = 44100, stereo: bool = True, with_audio: bool = True) -> None:
    """Write a clip as an mp4 (H.264 + AAC) with PyAV, for ``cavkit prepare`` tests.

    The video runs for the audio's duration at ``fps``; video frame j shows the clip frame nearest in
    time. Audio is resampled to ``audio_rate`` (and duplicated to stereo) so preparation has to
    resample and pick a channel, as with real files.
    """
    import io

    import av

    from cavkit.data import storage

    duration = len(clip.waveform) / SAMPLE_RATE
    n_video = max(1, int(round(duration * fps)))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        vstream = container.add_stream(codec, rate=int(fps) if float(fps).is_integer() else fps)
        size = config.image_size
        vstream.width = vstream.height = size + (size % 2)
        vstream.pix_fmt = "yuv420p"
        if codec == "libx264":
            vstream.options = {"crf": "18", "preset": "ultrafast"}
        astream = None
        if with_audio:
            astream = container.add_stream("aac", rate=audio_rate)
            astream.layout = "stereo" if stereo else "mono"
        for j in range(n_video):
            t_rows = (j / fps) * 100.0
            k = int(np.clip(np.rint(t_rows * config.num_frames / config.audio_length), 0, config.num_frames - 1))
            pixels = clip.frames[k]
            if size % 2:
                pixels = np.pad(pixels, ((0, 1), (0, 1), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            samples = torch.from_numpy(clip.waveform)
            if audio_rate != SAMPLE_RATE:
                import torchaudio.functional as AF

                samples = AF.resample(samples, SAMPLE_RATE, audio_rate)
            data = samples.numpy().astype(np.float32)
            channels = 2 if stereo else 1
            planar = np.ascontiguousarray(np.repeat(data[None, :], channels, axis=0))
            aframe = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo" if stereo else "mono")
            aframe.sample_rate = audio_rate
            for packet in astream.encode(aframe):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    storage.write_bytes_atomic(uri, buffer.getvalue())


def write_videos(folder: str, config: SyntheticDataConfig, count: int | None = None, **kwargs) -> list[str]:
    """Write the first ``count`` clips of ``config`` as ``<folder>/synth_<i>.mp4``; returns the URIs."""
    from cavkit.data import storage

    uris = []
    for index in range(config.num_clips if count is None else count):
        uri = storage.join(folder, f"synth_{index:04d}.mp4")
        write_video(uri, generate_clip(config, index), config, **kwargs)
        uris.append(uri)
    return uris


def label_table(config: SyntheticDataConfig) -> list[tuple[str, str]]:
    """``(mid, display name)`` per class, in the label-CSV convention (``synth_<c>``)."""
    return [(f"synth_{c}", CLASS_NAMES[c]) for c in range(config.num_classes)]

"""The ``cav_mae`` and ``cav_mae_sync`` datasets over the published datafile layout (spec §6.3, §6.4).

Items are dicts (:data:`cavkit.interfaces.SAMPLE_KEYS`) that torch's default collate stacks:

========== ============================== =====================================
key        CAV-MAE                         Sync train/eval (retrieval)
========== ============================== =====================================
audio      ``[target_length,128]``         ``[L,128]`` (``[K,L,128]``)
image      ``[3,H,W]``                     ``[3,H,W]`` (``[K,3,H,W]``)
label      ``[C]`` when a label CSV is set same
clip_id    str                             str
frame      int                             int (``[K]``)
skipped    int: bad clips dropped to produce this item (0 unless ``skip_bad_clips``)
========== ============================== =====================================

Bad data is never replaced by zeros (quirk 13 fixed). A missing, empty or corrupt file raises
:class:`~cavkit.errors.DataError` naming the clip and the file; with ``skip_bad_clips`` the clip is
dropped, logged once, counted in :attr:`FileDataset.skipped_clips` and the next clip is used in its
place. Because DataLoader workers are separate processes, the per-item ``skipped`` count is the
reliable way for a trainer to total the drops of an epoch: ``sum(batch["skipped"])``.

Class balancing: :meth:`FileDataset.sample_weights` returns the published per-clip weights for
``torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True)``.

Randomness (frame choice, mixup, noise, SpecAugment) uses torch's RNG, which the DataLoader seeds per
worker (quirk 8 fixed: numpy's global RNG was repeated across workers upstream).
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import Dataset

from cavkit.data import datafile as df
from cavkit.data import storage
from cavkit.data.audio import MIN_SAMPLES, SAMPLE_RATE, AudioDecodeError, decode_audio, to_mono_16k
from cavkit.data.configs import CavMaeDataConfig, SyncDataConfig
from cavkit.data.fbank import fbank_rows, kaldi_fbank, normalize, pad_or_crop, segment_bounds, segments, single_threaded
from cavkit.data.images import ImageDecodeError, augment_transform, decode_image, eval_transform
from cavkit.errors import DataError

log = logging.getLogger("cavkit.data")


def load_waveform(clip_id: str, uri: str) -> torch.Tensor:
    """Mono 16 kHz waveform ``[samples]`` of a clip's audio file, or a :class:`DataError`."""
    return waveform_from_bytes(clip_id, uri, _read(clip_id, "audio", uri))


def waveform_from_bytes(clip_id: str, where: str, data: bytes) -> torch.Tensor:
    """Decode audio bytes to a mono 16 kHz waveform; ``where`` names the file in errors."""
    try:
        waveform, rate = decode_audio(data)
    except AudioDecodeError as exc:
        raise DataError(f"clip {clip_id!r}: audio file {where} is unusable: {exc}") from None
    mono = to_mono_16k(waveform, rate)
    if mono.numel() < MIN_SAMPLES:
        raise DataError(
            f"clip {clip_id!r}: audio file {where} is too short ({mono.numel()} samples, need >= {MIN_SAMPLES})"
        )
    return mono


def clip_fbank(clip_id: str, uri: str) -> torch.Tensor:
    """Un-normalised, un-padded fbank ``[frames,128]`` of a clip's audio file."""
    return kaldi_fbank(load_waveform(clip_id, uri), SAMPLE_RATE)


def load_frame_image(clip_id: str, uri: str):
    """PIL RGB image of one frame file, or a :class:`DataError`."""
    return image_from_bytes(clip_id, uri, _read(clip_id, "frame", uri))


def image_from_bytes(clip_id: str, where: str, data: bytes):
    try:
        return decode_image(data)
    except ImageDecodeError as exc:
        raise DataError(f"clip {clip_id!r}: frame file {where} is unusable: {exc}") from None


def _read(clip_id: str, what: str, uri: str) -> bytes:
    try:
        return storage.read_bytes(uri)
    except FileNotFoundError:
        raise DataError(f"clip {clip_id!r}: {what} file {uri} is missing") from None
    except OSError as exc:
        raise DataError(f"clip {clip_id!r}: {what} file {uri} cannot be read ({exc})") from None


class FileDataset(Dataset):
    """Shared machinery: the datafile, labels, weights, and bad-clip handling."""

    def __init__(self, config: CavMaeDataConfig | SyncDataConfig):
        self.config = config
        clips = df.load_datafile(config.datafile, limit=config.limit)
        self.clips = df.ClipTable(clips)
        if not clips:
            raise DataError(f"datafile {config.datafile} has no entries")
        self.labels = df.load_label_csv(config.label_csv) if config.label_csv else None
        if self.labels is not None:  # unknown labels fail now, with the clip named, not mid-epoch
            df.sample_weights(clips, self.labels)
        self._label_index = self.labels.index() if self.labels else None
        self.image_transform = eval_transform(config.image_size)
        #: Bad clips met in this process since the last :meth:`reset_skipped`.
        self.skipped_clips = 0
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_classes(self) -> int | None:
        return self.labels.num_classes if self.labels else None

    def sample_weights(self) -> torch.Tensor:
        """Per-clip sampling weights ``[N]`` (float64) for ``WeightedRandomSampler`` (spec §6.1).

        From ``weights_file`` when set, else computed from the labels; uniform without labels.
        """
        if self.config.weights_file:
            return torch.from_numpy(df.load_weights(self.config.weights_file, len(self.clips)))
        if self.labels is None:
            return torch.ones(len(self.clips), dtype=torch.float64)
        return torch.from_numpy(df.sample_weights(list(self.clips), self.labels))

    def reset_skipped(self) -> int:
        """Return the bad-clip count of this process and start a new count (call once per epoch)."""
        count, self.skipped_clips = self.skipped_clips, 0
        return count

    def __getitem__(self, index: int) -> dict:
        with single_threaded():
            return self._get(index)

    def _get(self, index: int) -> dict:
        if not self.config.skip_bad_clips:
            return {**self.item(index), "skipped": 0}
        skipped = 0
        for attempt in range(len(self.clips)):
            current = (index + attempt) % len(self.clips)
            try:
                item = self.item(current)
            except DataError as exc:
                skipped += 1
                self.skipped_clips += 1
                if current not in self._reported:
                    self._reported.add(current)
                    log.warning("skipping bad clip: %s", exc)
                continue
            return {**item, "skipped": skipped}
        raise DataError(f"datafile {self.config.datafile}: every clip is unusable (skip_bad_clips is on)")

    def item(self, index: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------
    def label_of(self, clip: df.Clip) -> dict:
        if self._label_index is None:
            return {}
        vector = df.label_vector(clip.labels, self._label_index, self.config.label_smoothing, where=f"clip {clip.video_id!r}: ")
        return {"label": torch.from_numpy(vector)}

    def image(self, clip: df.Clip, frame: int, transform=None) -> torch.Tensor:
        return (transform or self.image_transform)(load_frame_image(clip.video_id, clip.frame_uri(frame)))


def _randint(low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (inclusive, like ``random.randint``) from torch's RNG."""
    return int(torch.randint(low, high + 1, ()).item())


class CavMaeDataset(FileDataset):
    """CAV-MAE items: whole-clip fbank ``[target_length,128]``, one frame ``[3,H,W]`` (spec §6.3)."""

    config: CavMaeDataConfig

    def __init__(self, config: CavMaeDataConfig):
        super().__init__(config)
        self.train = config.mode == "train"
        self.eval_frame = config.num_frames // 2 if config.eval_frame is None else config.eval_frame

    def frame_index(self) -> int:
        return _randint(0, self.config.num_frames - 1) if self.train else self.eval_frame

    def frame_image(self, clip: df.Clip, frame: int) -> tuple[torch.Tensor, int]:
        """The frame, stepping down to lower indices while the file is missing (published, quirk 14)."""
        while True:
            try:
                return self.image(clip, frame), frame
            except DataError:
                if not self.config.frame_fallback or frame == 0 or storage.exists(clip.frame_uri(frame)):
                    raise
                frame -= 1

    def item(self, index: int) -> dict:
        cfg = self.config
        clip = self.clips[index]
        image, frame = self.frame_image(clip, self.frame_index())
        out: dict = {}
        if self.train and cfg.mixup > 0 and torch.rand(()).item() < cfg.mixup:
            other = self.clips[_randint(0, len(self.clips) - 1)]
            lam = float(torch.distributions.Beta(10.0, 10.0).sample())
            fbank = self.mixed_fbank(clip, other, lam)
            # quirk 7 fixed: the second frame comes from the second clip's own folder.
            other_image, _ = self.frame_image(other, self.frame_index())
            image = lam * image + (1 - lam) * other_image
            if self._label_index is not None:
                vector = df.mixed_label_vector(clip.labels, other.labels, self._label_index, lam, cfg.label_smoothing, where=f"clip {clip.video_id!r}: ")
                out["label"] = torch.from_numpy(vector)
        else:
            fbank = clip_fbank(clip.video_id, clip.wav)
            out.update(self.label_of(clip))
        fbank = pad_or_crop(fbank, cfg.target_length)
        if self.train:
            fbank = spec_augment(fbank, cfg.freqm, cfg.timem)
        fbank = normalize(fbank, cfg.mean, cfg.std)
        if self.train and cfg.noise:
            fbank = add_noise(fbank)
        return {"audio": fbank, "image": image, **out, "clip_id": clip.video_id, "frame": frame}

    def mixed_fbank(self, clip: df.Clip, other: df.Clip, lam: float) -> torch.Tensor:
        """Fbank of ``lam * w1 + (1 - lam) * w2`` (mean-removed; w2 padded/cut to w1's length)."""
        w1 = load_waveform(clip.video_id, clip.wav)
        w2 = load_waveform(other.video_id, other.wav)
        w1, w2 = w1 - w1.mean(), w2 - w2.mean()
        if w2.numel() < w1.numel():
            w2 = torch.nn.functional.pad(w2, (0, w1.numel() - w2.numel()))
        else:
            w2 = w2[: w1.numel()]
        return kaldi_fbank(lam * w1 + (1 - lam) * w2, SAMPLE_RATE)


def spec_augment(fbank: torch.Tensor, freqm: int, timem: int) -> torch.Tensor:
    """One frequency and one time mask (width ~ U[0, bound)), value 0, before normalisation (§6.3)."""
    if not freqm and not timem:
        return fbank
    import torchaudio.transforms as AT

    x = fbank.t().unsqueeze(0)
    if freqm:
        x = AT.FrequencyMasking(freqm)(x)
    if timem:
        x = AT.TimeMasking(timem)(x)
    return x.squeeze(0).t()


def add_noise(fbank: torch.Tensor) -> torch.Tensor:
    """Add ``U[0,1) * u / 10`` (u ~ U[0,1) per clip) and roll time by ``randint(-T, T)`` (§6.3)."""
    length = fbank.shape[0]
    fbank = fbank + torch.rand(fbank.shape) * torch.rand(()).item() / 10
    return torch.roll(fbank, int(torch.randint(-length, length, ()).item()), 0)


class SyncDataset(FileDataset):
    """CAV-MAE Sync items: frames with their frame-aligned fbank segments (spec §6.4).

    The whole-clip fbank is computed once per item (the published retrieval mode recomputed it for
    every one of the K frames) and padded/cut to ``spectrogram_length``; frame i gets rows
    :func:`cavkit.data.fbank.segment_bounds`. SpecAugment, mixup and noise do not exist here, as
    upstream (quirk 22).
    """

    config: SyncDataConfig

    def __init__(self, config: SyncDataConfig):
        super().__init__(config)
        self.mode = config.mode
        self.eval_frame = config.num_frames // 2 if config.eval_frame is None else config.eval_frame
        self.train_transform = augment_transform(config.image_size) if config.augmentation else None

    def item(self, index: int) -> dict:
        cfg = self.config
        clip = self.clips[index]
        if self.mode == "retrieval":
            frames = list(range(cfg.num_frames))
        elif self.mode == "train":
            frames = [_randint(0, cfg.num_frames - 1)]
        else:
            frames = [self.eval_frame]
        transform = self.train_transform if self.mode == "train" else None
        images = [self.image(clip, f, transform) for f in frames]
        waveform = load_waveform(clip.video_id, clip.wav)
        audio = normalize(sync_segments(waveform, frames, cfg.num_frames, cfg.segment_length, cfg.spectrogram_length), cfg.mean, cfg.std)
        if self.mode == "retrieval":
            item = {"audio": audio, "image": torch.stack(images), "frame": torch.tensor(frames)}
        else:
            item = {"audio": audio[0], "image": images[0], "frame": frames[0]}
        return {**item, **self.label_of(clip), "clip_id": clip.video_id}


def sync_segments(waveform: torch.Tensor, frames: list[int], num_frames: int, segment_length: int, spectrogram_length: int) -> torch.Tensor:
    """Un-normalised segments ``[len(frames), L, 128]`` of a clip for ``frames`` (spec §6.4).

    One frame: only its rows are computed (:func:`fbank_rows`); several: the whole-clip fbank
    once, then sliced (upstream recomputed the whole fbank for every frame).
    """
    if len(frames) == 1:
        start, end = segment_bounds(frames[0], num_frames, spectrogram_length, segment_length)
        return fbank_rows(waveform, start, end).unsqueeze(0)
    full = pad_or_crop(kaldi_fbank(waveform, SAMPLE_RATE), spectrogram_length)
    return segments(full, frames, num_frames, segment_length)


def build_cav_mae(config: CavMaeDataConfig) -> CavMaeDataset:
    """Factory of the ``cav_mae`` dataset component."""
    return CavMaeDataset(config)


def build_cav_mae_sync(config: SyncDataConfig) -> SyncDataset:
    """Factory of the ``cav_mae_sync`` dataset component."""
    return SyncDataset(config)


__all__ = [
    "CavMaeDataset",
    "SyncDataset",
    "FileDataset",
    "build_cav_mae",
    "build_cav_mae_sync",
    "clip_fbank",
    "load_waveform",
]

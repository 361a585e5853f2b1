"""The ``segmentation`` dataset: (image, binary mask, audio) triples for sound-prompted segmentation.

Benchmarks in the style of ADE20K-Sound pair a still image with a sound and the binary mask of the
object that makes it. The datafile lists them (relative paths resolve against its folder)::

    {"data": [{"id": "0001", "image": "images/0001.png", "mask": "masks/0001.png", "wav": "audio/0001.wav"}, ...],
     "fbank_mean": -6.4, "fbank_std": 3.8}

``fbank_mean`` / ``fbank_std`` are optional (default: the published -5.081 / 4.4849).

Items (what :func:`cavkit.pictures.localize.embed_clip` and ``cavkit eval segmentation`` read):

* ``audio [audio_length, 128]``: the normalised kaldi fbank of the *middle* ``audio_length`` rows of
  the clip (the model's segment: 416 rows for released Sync, 1024 for CAV-MAE); a shorter clip is
  refused unless ``pad_audio`` (zero padding at the end, as the published CAV-MAE loader does);
* ``image [3, S, S]``: Resize(short side, bicubic) + CenterCrop(S), ImageNet-normalised (spec §6.3);
* ``object_mask [s, s]`` bool: the mask cropped to the same centre square *at its own resolution*
  (``s = min(H, W)``, torchvision's crop offsets); maps are upsampled to it, so nothing is resized;
* ``clip_id``, ``frame`` = 0, ``skipped`` = 0.

Bad input fails with a :class:`~cavkit.errors.DataError` naming the file and the fix: a mask whose
size differs from its image's, a mask that is not binary (values other than {0, 1} or {0, 255}), and
audio shorter than the model's segment.
"""

from __future__ import annotations

import io
import json
from typing import Any

import attrs
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cavkit.data import storage
from cavkit.data.configs import NORM_MEAN, NORM_STD, SegmentationDataConfig
from cavkit.data.datasets import image_from_bytes, load_waveform
from cavkit.data.fbank import kaldi_fbank, normalize, num_fbank_frames, pad_or_crop, single_threaded
from cavkit.data.images import eval_transform
from cavkit.errors import DataError

_KEYS = ("id", "image", "mask", "wav")


@attrs.frozen
class SegmentationEntry:
    """One datafile entry with resolved URIs."""

    id: str
    image: str
    mask: str
    wav: str


def load_segmentation_datafile(uri: str, *, limit: int | None = None) -> tuple[list[SegmentationEntry], dict[str, Any]]:
    """The entries of a segmentation datafile and its top-level settings (``fbank_mean``/``fbank_std``)."""
    try:
        document = json.loads(storage.read_bytes(uri))
        entries = document["data"]
        if not isinstance(entries, list):
            raise TypeError("'data' is not a list")
    except FileNotFoundError:
        raise DataError(
            f"segmentation datafile {uri} does not exist; make one with `cavkit data synthetic-segmentation -o DIR`"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"segmentation datafile {uri} is not a JSON object with a 'data' list of "
            f"{{{', '.join(repr(k) for k in _KEYS)}}} entries ({exc})"
        ) from None
    base = storage.parent(uri)
    out = []
    for i, entry in enumerate(entries[:limit] if limit is not None else entries):
        missing = [k for k in _KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DataError(f"segmentation datafile {uri}: entry {i} lacks {', '.join(repr(k) for k in missing)}")
        out.append(
            SegmentationEntry(
                id=str(entry["id"]), **{k: storage.resolve(str(entry[k]), base) for k in ("image", "mask", "wav")}
            )
        )
    if not out:
        raise DataError(f"segmentation datafile {uri} has no entries")
    return out, {k: v for k, v in document.items() if k != "data"}


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centre square that Resize(short side) + CenterCrop keeps, in input pixels."""
    side = min(height, width)
    return int(round((height - side) / 2.0)), int(round((width - side) / 2.0)), side


def binary_mask(entry: SegmentationEntry, image_size: tuple[int, int]) -> np.ndarray:
    """The entry's mask as bool ``[H, W]``; refuses a size other than the image's and non-binary values."""
    try:
        data = storage.read_bytes(entry.mask)
    except FileNotFoundError:
        raise DataError(f"segmentation item {entry.id!r}: mask file {entry.mask} is missing") from None
    try:
        if not data:
            raise ValueError("empty file")
        picture = Image.open(io.BytesIO(data))
        picture.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
        raise DataError(f"segmentation item {entry.id!r}: mask file {entry.mask} is unusable: {exc}") from None
    if picture.size != image_size:
        (mw, mh), (iw, ih) = picture.size, image_size
        raise DataError(
            f"segmentation item {entry.id!r}: mask {entry.mask} is {mw}x{mh} pixels but its image {entry.image} "
            f"is {iw}x{ih}; a mask must have its image's size (resize it with nearest-neighbour interpolation "
            f"to {iw}x{ih})"
        )
    values = np.asarray(picture.convert("L") if picture.mode not in ("1", "L") else picture)
    levels = np.unique(values)
    if picture.mode != "1" and not (set(levels.tolist()) <= {0, 255} or set(levels.tolist()) <= {0, 1}):
        shown = ", ".join(str(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
        raise DataError(
            f"segmentation item {entry.id!r}: mask {entry.mask} is not binary: it holds {len(levels)} distinct values "
            f"({shown}); save it with only 0 (background) and 255 (the sounding object), e.g. by thresholding it"
        )
    return values > 0


class SegmentationDataset(Dataset):
    """See the module docstring. ``dataset[i]`` -> dict with ``audio``, ``image``, ``object_mask``, ``clip_id``."""

    def __init__(self, config: SegmentationDataConfig):
        self.config = config
        self.entries, settings = load_segmentation_datafile(config.datafile, limit=config.limit)
        self.mean = config.mean if config.mean is not None else float(settings.get("fbank_mean", NORM_MEAN))
        self.std = config.std if config.std is not None else float(settings.get("fbank_std", NORM_STD))
        self.transform = eval_transform(config.image_size)
        self.skipped_clips = 0

    def __len__(self) -> int:
        return len(self.entries)

    def reset_skipped(self) -> int:
        return 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        with single_threaded():
            return self.item(index)

    def item(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        try:
            data = storage.read_bytes(entry.image)
        except FileNotFoundError:
            raise DataError(f"segmentation item {entry.id!r}: image file {entry.image} is missing") from None
        image = image_from_bytes(entry.id, entry.image, data)
        mask = binary_mask(entry, image.size)
        top, left, side = centre_square(*mask.shape)
        return {
            "audio": self.audio(entry),
            "image": self.transform(image),
            "object_mask": torch.from_numpy(np.ascontiguousarray(mask[top : top + side, left : left + side])),
            "clip_id": entry.id,
            "frame": 0,
            "skipped": 0,
        }

    def audio_only(self, index: int) -> torch.Tensor:
        """Item ``index``'s ``audio`` alone (no image or mask decoding)."""
        with single_threaded():
            return self.audio(self.entries[index])

    def audio(self, entry: SegmentationEntry) -> torch.Tensor:
        """Normalised fbank ``[audio_length, 128]`` of the middle rows of the entry's clip."""
        length = self.config.audio_length
        waveform = load_waveform(entry.id, entry.wav)
        rows = num_fbank_frames(waveform.numel())
        if rows < length and not self.config.pad_audio:
            raise DataError(
                f"segmentation item {entry.id!r}: audio {entry.wav} gives {rows} fbank rows ({rows / 100:.2f} s) but "
                f"the model's audio segment is {length} rows ({length / 100:.2f} s); use clips of at least "
                f"{(400 + 160 * (length - 1)) / 16000:.2f} s, or pass --data pad_audio=true to zero-pad them "
                "(as the published CAV-MAE loader pads to 1024 rows)"
            )
        fbank = kaldi_fbank(waveform)
        start = max(0, (rows - length) // 2)
        return normalize(pad_or_crop(fbank[start:], length), self.mean, self.std)


def build_segmentation(config: SegmentationDataConfig) -> SegmentationDataset:
    """Factory of the ``segmentation`` dataset component."""
    return SegmentationDataset(config)

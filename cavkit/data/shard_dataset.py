"""The ``shards`` dataset: streams tar shards (see :mod:`cavkit.data.shards`) through fsspec.

An ``IterableDataset``: shards are split across distributed ranks and then DataLoader workers
(each shard is read by exactly one worker), members are decoded on the fly and turned into the
same items as ``cav_mae`` / ``cav_mae_sync`` (keys in :mod:`cavkit.data.datasets`). In train mode an
optional shuffle buffer mixes clips across shards. Bad members raise :class:`DataError` naming the
shard and clip, or with ``skip_bad_clips`` are dropped and counted (``skipped`` on the next item).
"""

from __future__ import annotations

import json
import logging
import random
import tarfile

import torch
from torch.utils.data import IterableDataset, get_worker_info

from cavkit.data import datafile as df
from cavkit.data import storage
from cavkit.data.audio import SAMPLE_RATE
from cavkit.data.configs import ShardsDataConfig
from cavkit.data.datasets import add_noise, image_from_bytes, spec_augment, sync_segments, waveform_from_bytes
from cavkit.data.fbank import kaldi_fbank, normalize, pad_or_crop, single_threaded
from cavkit.data.images import eval_transform
from cavkit.data.shards import expand_urls, iter_samples
from cavkit.errors import DataError

log = logging.getLogger("cavkit.data")


class ShardDataset(IterableDataset):
    """Items from tar shards; ``len()`` comes from ``index.json`` beside the shards when present."""

    def __init__(self, config: ShardsDataConfig):
        self.config = config
        self.urls = expand_urls(list(config.urls))
        if not self.urls:
            raise DataError(f"shards: no shard matches {config.urls}")
        folder = storage.parent(self.urls[0])
        label_csv = config.label_csv or storage.join(folder, "labels.csv")
        self.labels = df.load_label_csv(label_csv) if (config.label_csv or storage.exists(label_csv)) else None
        self._label_index = self.labels.index() if self.labels else None
        self._length = self._indexed_length(folder)
        self.transform = eval_transform(config.image_size)
        self.skipped_clips = 0
        self.epoch = 0

    def _indexed_length(self, folder: str) -> int | None:
        index_uri = storage.join(folder, "index.json")
        if not storage.exists(index_uri):
            return None
        index = json.loads(storage.read_bytes(index_uri))
        counts = {entry["name"]: entry["clips"] for entry in index["shards"]}
        names = [url.rstrip("/").rsplit("/", 1)[-1] for url in self.urls]
        return sum(counts.get(n, 0) for n in names) if all(n in counts for n in names) else None

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("shards: length unknown (no index.json beside the shards)")
        return self._length

    @property
    def num_classes(self) -> int | None:
        return self.labels.num_classes if self.labels else None

    def set_epoch(self, epoch: int) -> None:
        """Vary the shard order and shuffle buffer per epoch."""
        self.epoch = epoch

    def reset_skipped(self) -> int:
        count, self.skipped_clips = self.skipped_clips, 0
        return count

    def my_shards(self) -> list[str]:
        """This rank's and worker's share of the shards."""
        urls = list(self.urls)
        if self.config.mode == "train":
            random.Random(self.epoch).shuffle(urls)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            urls = urls[torch.distributed.get_rank() :: torch.distributed.get_world_size()]
        info = get_worker_info()
        if info is not None:
            urls = urls[info.id :: info.num_workers]
        return urls

    def __iter__(self):
        items = self._items()
        if self.config.mode != "train" or self.config.shuffle_buffer <= 1:
            yield from items
            return
        rng = random.Random(torch.initial_seed() + self.epoch)
        buffer = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= self.config.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def _items(self):
        skipped = 0
        for url in self.my_shards():
            try:
                samples = iter_samples(url)
                for key, members in samples:
                    try:
                        with single_threaded():
                            item = self.item(url, key, members)
                    except DataError as exc:
                        if not self.config.skip_bad_clips:
                            raise
                        skipped += 1
                        self.skipped_clips += 1
                        log.warning("skipping bad clip: %s", exc)
                        continue
                    yield {**item, "skipped": skipped}
                    skipped = 0
            except FileNotFoundError:
                raise DataError(f"shard {url} is missing") from None
            except (OSError, EOFError, tarfile.TarError) as exc:
                raise DataError(f"shard {url} cannot be read ({exc})") from None

    def item(self, url: str, key: str, members: dict[str, bytes]) -> dict:
        cfg = self.config
        where = f"{url}:{key}"
        try:
            meta = json.loads(members["json"])
            video_id = meta["video_id"]
        except (KeyError, ValueError):
            raise DataError(f"shard {url}: clip {key!r} has no readable .json member") from None
        if "wav" not in members:
            raise DataError(f"clip {video_id!r}: shard {url} has no {key}.wav")
        stored = int(meta.get("num_frames") or sum(s.startswith("frame_") for s in members))
        num_frames = cfg.num_frames or (min(10, stored) if cfg.layout == "cav_mae" else stored)
        train = cfg.mode == "train"
        if cfg.mode == "retrieval":
            frames = list(range(num_frames))
        elif train:
            frames = [int(torch.randint(0, num_frames, ()).item())]
        else:
            frames = [num_frames // 2 if cfg.eval_frame is None else cfg.eval_frame]
        images = []
        for f in frames:
            name = f"frame_{f}.jpg"
            if name not in members:
                raise DataError(f"clip {video_id!r}: shard {url} has no {key}.{name}")
            images.append(self.transform(image_from_bytes(video_id, f"{where}.{name}", members[name])))
        waveform = waveform_from_bytes(video_id, f"{where}.wav", members["wav"])
        out = {"clip_id": video_id}
        if self._label_index is not None:
            out["label"] = torch.from_numpy(df.label_vector(tuple(meta.get("labels", ())), self._label_index, cfg.label_smoothing, where=f"clip {video_id!r}: "))
        if cfg.layout == "cav_mae":
            fbank = pad_or_crop(kaldi_fbank(waveform, SAMPLE_RATE), cfg.target_length)
            if train:
                fbank = spec_augment(fbank, cfg.freqm, cfg.timem)
            fbank = normalize(fbank, cfg.mean, cfg.std)
            if train and cfg.noise:
                fbank = add_noise(fbank)
            return {**out, "audio": fbank, "image": images[0], "frame": frames[0]}
        audio = normalize(sync_segments(waveform, frames, num_frames, cfg.segment_length, cfg.spectrogram_length), cfg.mean, cfg.std)
        if cfg.mode == "retrieval":
            return {**out, "audio": audio, "image": torch.stack(images), "frame": torch.tensor(frames)}
        return {**out, "audio": audio[0], "image": images[0], "frame": frames[0]}


def build_shards(config: ShardsDataConfig) -> ShardDataset:
    """Factory of the ``shards`` dataset component."""
    return ShardDataset(config)

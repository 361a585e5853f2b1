"""Data throughput: cavkit's datasets vs a naive per-sample pipeline, and `cavkit prepare` clips/s.

Run: ``python bench/data.py [--clips 8] [--repeats 3] [--prepare-clips 4]``

Everything is measured in this process, side by side, on one intra-op thread (what one DataLoader
worker gets), so "samples/s" is per worker. Data: generated 10 s clips (16 kHz PCM16 wav, 16 JPEG
frames of 224x224) in a temporary folder, the shape of prepared AudioSet/VGGSound data.

Baseline ("naive", the published approach): every item opens and decodes the audio file from
scratch with a general-purpose decoder (PyAV; torchaudio 2.9+ no longer decodes without
torchcodec), computes the kaldi fbank, and loads the frame; in Sync retrieval mode it does so
again for each of the 16 frames, as ``dataloader_sync.py`` does. Both produce identical tensors
(checked before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cavkit.data.audio import _decode_av, to_mono_16k  # noqa: E402
from cavkit.data.configs import CavMaeDataConfig, SyncDataConfig, SyntheticDataConfig  # noqa: E402
from cavkit.data.datasets import CavMaeDataset, SyncDataset  # noqa: E402
from cavkit.data.fbank import kaldi_fbank, normalize, pad_or_crop  # noqa: E402
from cavkit.data.images import encode_jpeg, eval_transform  # noqa: E402
from cavkit.data.video import wav_bytes  # noqa: E402


def make_clips(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    entries = []
    for c in range(count):
        vid = f"clip{c}"
        t = np.arange(160000) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (300 + 50 * c) * t) + 0.05 * rng.normal(size=t.size)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        (root / "audio" / f"{vid}.wav").write_bytes(wav_bytes((audio * 32767).astype(np.int16)))
        for i in range(16):
            folder = root / "frames" / f"frame_{i}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
            pixels[:, :112] = (i * 10, c * 20, 90)
            (folder / f"{vid}.jpg").write_bytes(encode_jpeg(Image.fromarray(pixels)))
        entries.append({"video_id": vid, "wav": f"audio/{vid}.wav", "video_path": "frames", "labels": ""})
    (root / "datafile.json").write_text(json.dumps({"data": entries}))
    return root / "datafile.json"


class Naive:
    """The published per-sample approach: decode + fbank from scratch for every (frame) request."""

    def __init__(self, clips):
        self.clips = clips
        self.transform = eval_transform(224)

    def fbank(self, clip, length):
        with open(clip.wav, "rb") as f:
            waveform, rate = _decode_av(f.read())
        return normalize(pad_or_crop(kaldi_fbank(to_mono_16k(waveform, rate)), length))

    def image(self, clip, frame):
        return self.transform(Image.open(clip.frame_uri(frame)).convert("RGB"))

    def cav_mae_eval(self, i):
        clip = self.clips[i]
        return {"audio": self.fbank(clip, 1024), "image": self.image(clip, 5)}

    def sync_frame(self, clip, frame, length=416):
        full = self.fbank(clip, 1024)  # recomputed per frame, as upstream
        start = max(0, round(frame * 1024 / 16) - length // 2)
        end = start + length
        if end > 1024:
            end, start = 1024, 1024 - length
        return full[start:end], self.image(clip, frame)

    def sync_retrieval(self, i):
        clip = self.clips[i]
        pairs = [self.sync_frame(clip, f) for f in range(16)]
        return {"audio": torch.stack([p[0] for p in pairs]), "image": torch.stack([p[1] for p in pairs])}

    def sync_eval(self, i):
        audio, image = self.sync_frame(self.clips[i], 8)
        return {"audio": audio, "image": image}


def rate(fn, n, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def bench_datasets(clips: int, repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        datafile = str(make_clips(Path(tmp), clips))
        cav = CavMaeDataset(CavMaeDataConfig(datafile=datafile, mode="eval"))
        sync_eval = SyncDataset(SyncDataConfig(datafile=datafile, mode="eval"))
        sync_ret = SyncDataset(SyncDataConfig(datafile=datafile, mode="retrieval"))
        naive = Naive(cav.clips)
        for name, ours, base in [
            ("cav_mae eval [1024,128] + 1 frame", cav.__getitem__, naive.cav_mae_eval),
            ("cav_mae_sync train/eval [416,128] + 1 frame", sync_eval.__getitem__, naive.sync_eval),
            ("cav_mae_sync retrieval [16,416,128] + 16 frames", sync_ret.__getitem__, naive.sync_retrieval),
        ]:
            a, b = ours(0), base(0)
            assert torch.allclose(a["audio"], b["audio"], atol=1e-5) and torch.allclose(a["image"], b["image"], atol=1e-5)
            rows.append((name, rate(ours, clips, repeats), rate(base, clips, repeats)))
    return rows


def bench_prepare(count: int, workers: list[int]) -> list[tuple[int, float]]:
    from cavkit.data.prepare import PrepareOptions, prepare
    from cavkit.data.synthetic import generate_clip, write_video

    config = SyntheticDataConfig(num_clips=count, image_size=224, audio_length=1000, num_frames=10)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        for i in range(count):
            write_video(str(videos / f"v{i}.mp4"), generate_clip(config, i), config, fps=25.0)
        for w in workers:
            out = Path(tmp) / f"out{w}"
            start = time.perf_counter()
            summary = prepare([str(videos)], PrepareOptions(out=str(out), num_frames=16), workers=w, progress=False)
            elapsed = time.perf_counter() - start
            assert summary.count("prepared") == count
            rows.append((w, count / elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prepare-clips", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"cpu cores: {os.cpu_count()}, torch threads: 1 (one DataLoader worker)")
    print(f"{'item':<50}{'cavkit/s':>10}{'naive/s':>10}{'ratio':>8}")
    for name, ours, base in bench_datasets(args.clips, args.repeats):
        print(f"{name:<50}{ours:>10.1f}{base:>10.1f}{ours / base:>7.1f}x")
    print("cavkit prepare (10 s 224x224 25 fps H.264 + AAC 44.1 kHz stereo -> wav + 16 frames):")
    for workers, clips_per_s in bench_prepare(args.prepare_clips, [1, 2]):
        print(f"  workers={workers}: {clips_per_s:.2f} clips/s")


if __name__ == "__main__":
    main()

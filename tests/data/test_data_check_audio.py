"""Audio cut short or too short for training: `cavkit data check` says so, the loader never pads it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cavkit.data.audio import TruncatedAudioError, decode_audio
from cavkit.data.configs import CavMaeDataConfig
from cavkit.data.datasets import CavMaeDataset
from cavkit.data.images import encode_jpeg
from cavkit.data.video import wav_bytes
from cavkit.errors import DataError
from cavkit.testing import run_cli

NUM_FRAMES = 2


def noise(num_samples: int) -> np.ndarray:
    return (np.random.default_rng(num_samples).normal(0, 0.1, num_samples) * 32767).astype(np.int16)


def write_clips(root: Path, wavs: dict[str, bytes]) -> Path:
    """A datafile whose clips have the given wav bytes and two good frames each."""
    entries = []
    for video_id, data in wavs.items():
        (root / "audio").mkdir(parents=True, exist_ok=True)
        (root / "audio" / f"{video_id}.wav").write_bytes(data)
        for i in range(NUM_FRAMES):
            (root / "frames" / f"frame_{i}").mkdir(parents=True, exist_ok=True)
            (root / "frames" / f"frame_{i}" / f"{video_id}.jpg").write_bytes(encode_jpeg(Image.new("RGB", (32, 32), (i * 40, 90, 10))))
        entries.append({"video_id": video_id, "wav": f"audio/{video_id}.wav", "video_path": "frames", "labels": ""})
    datafile = root / "datafile.json"
    datafile.write_text(json.dumps({"data": entries}))
    return datafile


def streamed_wav(samples: np.ndarray) -> bytes:
    """A WAV as a streaming writer leaves it: RIFF and data sizes set to 0xFFFFFFFF (length unknown)."""
    data = bytearray(wav_bytes(samples))
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture
def clips(tmp_path):
    whole = wav_bytes(noise(16000))
    return write_clips(tmp_path, {
        "whole": whole,
        "half": whole[: len(whole) // 2],  # header still says 16000 samples
        "tiny": wav_bytes(noise(28)),  # a complete file, too short for one 25 ms window
        "streamed": streamed_wav(noise(8000)),
    })


def test_data_check_reports_truncated_and_too_short_audio(clips):
    result = run_cli(["data", "check", str(clips), "--frames", str(NUM_FRAMES), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["audio"] == {"ok": 2, "truncated": 1, "too short": 1}
    assert report["usable_cav_mae"] == 2
    problems = {c["video_id"]: c["problem"] for c in report["bad_clips"]}
    assert problems == {"half": f"audio truncated ({clips.parent / 'audio' / 'half.wav'})",
                        "tiny": f"audio too short ({clips.parent / 'audio' / 'tiny.wav'})"}
    text = run_cli(["data", "check", str(clips), "--frames", str(NUM_FRAMES)]).stdout
    assert "audio:  ok 2, truncated 1, too short 1" in text
    assert run_cli(["data", "check", str(clips), "--frames", str(NUM_FRAMES), "--strict"]).exit_code == 1


def test_the_loader_never_pads_a_truncated_wav(clips):
    whole = (clips.parent / "audio" / "whole.wav").read_bytes()
    with pytest.raises(TruncatedAudioError, match=r"declares 16000 samples \(1.00 s\) but the file holds 7989 \(0.50 s\)"):
        decode_audio(whole[: len(whole) // 2])
    dataset = CavMaeDataset(CavMaeDataConfig(datafile=str(clips), mode="eval", image_size=32))
    assert dataset[0]["audio"].shape == (1024, 128)
    with pytest.raises(DataError, match=r"clip 'half': audio file .*half.wav is unusable: truncated"):
        dataset[1]
    with pytest.raises(DataError, match=r"clip 'tiny': .* too short \(28 samples, need >= 400\)"):
        dataset[2]
    waveform, rate = decode_audio((clips.parent / "audio" / "streamed.wav").read_bytes())
    assert (waveform.shape, rate) == ((1, 8000), 16000)

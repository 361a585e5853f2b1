"""`cavkit prepare` on generated videos and on the real sample clips, then loading with every dataset."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cavkit.data.configs import CavMaeDataConfig, ShardsDataConfig, SyncDataConfig, SyntheticDataConfig
from cavkit.data.datasets import CavMaeDataset, SyncDataset
from cavkit.data.images import resize_center_crop
from cavkit.data.prepare import PrepareOptions, prepare
from cavkit.data.shard_dataset import ShardDataset
from cavkit.data.synthetic import generate_clip, write_video
from cavkit.data.video import frame_indices
from cavkit.testing import run_cli

SYNTH = SyntheticDataConfig(num_clips=3, num_frames=8, image_size=48, audio_length=300)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Three synthetic mp4s (AAC 44.1 kHz stereo), one without audio, one too short, one corrupt."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(3):
        write_video(str(folder / f"clip.{i}.mp4"), generate_clip(SYNTH, i), SYNTH)
    write_video(str(folder / "silent.mp4"), generate_clip(SYNTH, 0), SYNTH, with_audio=False)
    short = SyntheticDataConfig(num_clips=1, num_frames=2, image_size=48, audio_length=40, segment_length=16)
    write_video(str(folder / "short.mp4"), generate_clip(short, 0), short, audio_rate=16000, stereo=False)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    labels = folder / "labels_table.csv"
    labels.write_text('video_id,labels\nclip.0,"synth_0"\nclip.1,"synth_1,synth_0"\nclip.2,synth_2\n')
    return folder


def run_prepare(args):
    result = run_cli(["prepare", *args, "--no-progress"])
    assert result.exit_code == 0, result.stderr
    return result


def test_prepare_writes_the_published_layout_and_reports_failures(videos, tmp_path):
    out = tmp_path / "out"
    result = run_prepare([str(videos), "-o", str(out), "--frames", "16", "--labels", str(videos / "labels_table.csv"), "-j", "1"])
    assert "prepared 3, skipped 0 (already done), failed 3" in result.stdout
    report = json.loads((out / "prepare_report.json").read_text())
    reasons = {f["video_id"]: f["reason"] for f in report["failed"]}
    assert reasons["silent"] == "no audio track"
    assert reasons["short"].startswith("too short")
    assert reasons["corrupt"].startswith("undecodable")
    entries = json.loads((out / "datafile.json").read_text())["data"]
    assert [e["video_id"] for e in entries] == ["clip.0", "clip.1", "clip.2"]
    assert entries[1]["labels"] == "synth_1,synth_0"
    assert (out / "labels.csv").read_text().splitlines()[0] == "index,mid,display_name"
    weights = [float(x) for x in (out / "datafile_weight.csv").read_text().split()]
    assert weights == pytest.approx([1000 / 2.01, 1000 / 2.01 + 1000 / 1.01, 1000 / 1.01])
    for i in range(16):
        for e in entries:
            with Image.open(out / "frames" / f"frame_{i}" / f"{e['video_id']}.jpg") as im:
                assert im.size == (224, 224)
    with wave.open(str(out / "audio" / "clip.0.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
    source = generate_clip(SYNTH, 0).waveform
    # AAC at 44.1 kHz and back: same signal up to codec delay and loss
    n = min(len(source), len(samples)) - 4000
    best = max(np.corrcoef(source[:n], samples[lag : lag + n])[0, 1] for lag in range(0, 1200))
    assert best > 0.85
    assert not list(out.rglob("*.tmp"))


def test_prepared_clips_load_with_both_datasets_and_match_the_source(videos, tmp_path):
    out = tmp_path / "out"
    run_prepare([str(videos), "-o", str(out), "--model", "cav_mae_sync", "--labels", str(videos / "labels_table.csv"), "-j", "2"])
    common = dict(datafile=str(out / "datafile.json"), label_csv=str(out / "labels.csv"))
    sync = SyncDataset(SyncDataConfig(mode="retrieval", **common))
    item = sync[1]
    assert item["audio"].shape == (16, 416, 128) and item["image"].shape == (16, 3, 224, 224)
    assert item["label"].tolist() == [1.0, 1.0, 0.0]
    cav = CavMaeDataset(CavMaeDataConfig(mode="eval", **common))
    assert cav[0]["audio"].shape == (1024, 128) and cav[0]["frame"] == 5
    # the object of the synthetic clip is where its mask says, in the prepared frame
    clip = generate_clip(SYNTH, 0)
    k_video = frame_indices(int(round(3.0 * 10)), 10.0, 16)[5]
    k = int(np.clip(np.rint(k_video / 10.0 * 100 * SYNTH.num_frames / SYNTH.audio_length), 0, SYNTH.num_frames - 1))
    if clip.plan.visible[k]:
        frame = np.asarray(Image.open(out / "frames" / "frame_5" / "clip.0.jpg")).astype(float)
        mask = np.asarray(Image.fromarray(clip.masks[k]).resize((224, 224))) > 0
        assert np.abs(frame[mask].mean(0) - frame[~mask].mean(0)).max() > 60


def test_prepare_is_resumable_and_redoes_half_written_clips(videos, tmp_path):
    out = tmp_path / "out"
    run_prepare([str(videos / "clip.0.mp4"), str(videos / "clip.1.mp4"), "-o", str(out), "-j", "1"])
    (out / "audio" / "clip.1.wav").unlink()  # as if killed after the frames, before the wav
    before = (out / "frames" / "frame_3" / "clip.0.jpg").stat().st_mtime_ns
    result = run_prepare([str(videos / "clip.0.mp4"), str(videos / "clip.1.mp4"), "-o", str(out), "-j", "1"])
    assert "prepared 1, skipped 1 (already done), failed 0" in result.stdout
    assert (out / "audio" / "clip.1.wav").exists()
    assert (out / "frames" / "frame_3" / "clip.0.jpg").stat().st_mtime_ns == before


def test_prepare_to_memory_and_shards(videos):
    out = "memory://prepared-test"
    run_prepare([str(videos / "clip.0.mp4"), str(videos / "clip.2.mp4"), "-o", out, "--model", "cav_mae_sync", "-j", "2", "--shards", "1"])
    files = CavMaeDataset(CavMaeDataConfig(datafile=f"{out}/datafile.json", mode="eval"))
    shards = ShardDataset(ShardsDataConfig(urls=[f"{out}/shards/shard-*.tar"], mode="eval", layout="cav_mae"))
    assert len(shards) == 2
    from_shards = list(shards)
    for a, b in zip([files[0], files[1]], from_shards):
        assert a["clip_id"] == b["clip_id"]
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["image"], b["image"])
    sync_files = SyncDataset(SyncDataConfig(datafile=f"{out}/datafile.json", mode="retrieval"))
    sync_shards = list(ShardDataset(ShardsDataConfig(urls=[f"{out}/shards/shard-{{000000..000001}}.tar"], mode="retrieval", layout="sync")))
    assert torch.equal(sync_files[1]["audio"], sync_shards[1]["audio"])


def test_frame_positions_follow_the_published_extractor():
    # 10 s at 12.5 fps, 125 frames: frame i = int(i * 125 / 10) - 1, frame 0 reads frame 0
    assert frame_indices(125, 12.5, 10) == [0, 11, 24, 36, 49, 61, 74, 86, 99, 111]
    # a 30 fps clip with 400 frames only spans its first 10 s (299 frames)
    assert frame_indices(400, 29.97, 16)[-1] == int(15 * 299 / 16) - 1
    assert frame_indices(100, 25.0, 16, "linspace") == [int(x) for x in np.linspace(0, 99, 16)]


def test_resize_center_crop_matches_torchvision():
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    for size in [(320, 180), (181, 333), (224, 224)]:
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        ours = np.asarray(resize_center_crop(image, 224))
        theirs = np.asarray(T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224)])(image))
        assert np.array_equal(ours, theirs)


def test_prepare_real_samples(samples_dir, tmp_path):
    out = tmp_path / "samples"
    result = run_prepare([str(samples_dir), "-o", str(out), "--model", "cav_mae_sync", "-j", "2"])
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["prepared"] >= 3
    assert {f["video_id"]: f["reason"] for f in report["failed"]} == {"bikes_no_audio": "no audio track"}
    assert "failed (no audio track): 1" in result.stdout
    sync = SyncDataset(SyncDataConfig(datafile=str(out / "datafile.json"), mode="retrieval"))
    cav = CavMaeDataset(CavMaeDataConfig(datafile=str(out / "datafile.json"), mode="eval"))
    for i in range(len(sync)):
        item = sync[i]
        assert item["audio"].shape == (16, 416, 128) and torch.isfinite(item["audio"]).all()
        assert cav[i]["audio"].shape == (1024, 128)
    ids = [sync.clips[i].video_id for i in range(len(sync))]
    bunny = ids.index("bigbuckbunny")  # 5.3 s of 5.1-channel 48 kHz audio: padded to 1024 rows
    fbank = cav[bunny]["audio"]
    assert torch.allclose(fbank[-400:], torch.full_like(fbank[-400:], 5.081 / 4.4849))
    with wave.open(str(out / "audio" / "bigbuckbunny.wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and abs(w.getnframes() / 16000 - 5.31) < 0.05
    check = run_cli(["data", "check", str(out / "datafile.json"), "--strict"])
    assert check.exit_code == 0 and "usable for cav_mae_sync (audio + frames 0-15): 3" in check.stdout


def test_prepare_from_a_list_with_label_names_and_relative_paths(videos, tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{videos / 'clip.2.mp4'}\n{videos / 'clip.1.mp4'}\n")
    names = tmp_path / "names.csv"
    names.write_text('index,mid,display_name\n0,synth_2,"Two"\n1,synth_1,"One"\n2,synth_0,"Zero"\n')
    out = tmp_path / "out"
    run_prepare([str(listing), "-o", str(out), "--labels", str(videos / "labels_table.csv"), "--label-names", str(names), "--relative-paths", "-j", "1"])
    moved = tmp_path / "moved"
    out.rename(moved)  # relative paths: the folder is portable
    assert (moved / "labels.csv").read_text() == 'index,mid,display_name\n0,synth_2,Two\n1,synth_1,One\n2,synth_0,Zero\n'
    ds = CavMaeDataset(CavMaeDataConfig(datafile=str(moved / "datafile.json"), label_csv=str(moved / "labels.csv"), mode="eval"))
    assert [ds[i]["clip_id"] for i in range(2)] == ["clip.2", "clip.1"]
    assert ds[0]["label"].tolist() == [1.0, 0.0, 0.0] and ds[1]["label"].tolist() == [0.0, 1.0, 1.0]


def test_prepare_and_check_fail_clearly(videos, tmp_path):
    result = run_cli(["prepare", str(videos / "silent.mp4"), "-o", str(tmp_path / "o"), "--no-progress", "-j", "1"])
    assert result.exit_code == 2
    assert "silent: no audio track" in result.stdout and "no clip could be prepared" in result.stderr
    result = run_cli(["prepare", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = run_cli(["data", "check", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_variable_frame_rate_video_takes_frames_by_index(tmp_path):
    """A VFR clip (20/80 ms alternating) with 48 kHz mono audio: frames by decoded index as published."""
    from fractions import Fraction

    import av

    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=30)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "mono"
        pts = 0
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 4, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 20 if i % 2 else 80
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 48000 * 3), np.float32), format="fltp", layout="mono")
        sound.sample_rate = 48000
        for packet in [*audio.encode(sound), *audio.encode()]:
            container.mux(packet)
    summary = prepare([str(path)], PrepareOptions(out=str(tmp_path / "out"), num_frames=16), progress=False)
    assert summary.count("prepared") == 1
    expected = frame_indices(60, 60 / 3.02, 16)
    for i, index in enumerate(expected):
        brightness = np.asarray(Image.open(tmp_path / "out" / "frames" / f"frame_{i}" / "vfr.jpg")).mean()
        assert abs(brightness - index * 4) < 3


def test_clips_missing_from_the_label_table_are_reported(videos, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text('video_id,labels\nclip.0,"synth_0"\n')
    result = run_prepare([str(videos / "clip.0.mp4"), str(videos / "clip.1.mp4"), "-o", str(tmp_path / "o"), "--labels", str(table), "-j", "1"])
    assert "warning: 1 prepared clips have no labels in the label table (sample weight 0), e.g. clip.1" in result.stdout
    assert [float(x) for x in (tmp_path / "o" / "datafile_weight.csv").read_text().split()] == pytest.approx([1000 / 1.01, 0.0])

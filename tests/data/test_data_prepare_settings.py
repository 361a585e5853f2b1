"""`cavkit prepare` on files cut short, re-runs with other settings, and relative output folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cavkit.data.configs import CavMaeDataConfig
from cavkit.data.datasets import CavMaeDataset
from cavkit.testing import run_cli

SECONDS = 4.0
FPS = 10
RATE = 16000


def write_mp4(path: Path, *, audio_seconds: float = SECONDS) -> None:
    """A 4 s mp4 (64x64 video at 10 fps, 16 kHz mono AAC for ``audio_seconds``), index (moov) first.

    ``faststart`` puts the index first, as web downloads do, so a copy cut short still opens and
    declares the full length. With ``audio_seconds=2`` the last half of the file is video only, so
    cutting there damages only the video.
    """
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=FPS)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        per_frame = RATE // FPS
        for j in range(int(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), (j * 6) % 256, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
            if j < audio_seconds * FPS:
                sound = av.AudioFrame.from_ndarray(rng.normal(0, 0.1, (1, per_frame)).astype(np.float32), format="fltp", layout="mono")
                sound.sample_rate, sound.pts = RATE, j * per_frame
                for packet in audio.encode(sound):
                    container.mux(packet)
        for packet in [*video.encode(), *audio.encode()]:
            container.mux(packet)


def cut_at_packet(source: Path, target: Path, fraction: float) -> None:
    """Copy ``source`` cut at the packet boundary nearest ``fraction`` of its media packets.

    Cutting at a packet boundary is what makes the damage quiet: no decoder error, the demuxer
    just runs out of data while the header still declares the whole clip.
    """
    import av

    with av.open(str(source)) as container:
        positions = sorted(p.pos for p in container.demux() if p.size and p.pos >= 0)
    cut = positions[int(len(positions) * fraction)]
    target.write_bytes(source.read_bytes()[:cut])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    write_mp4(folder / "intact.mp4")
    cut_at_packet(folder / "intact.mp4", folder / "cut_both.mp4", 0.5)
    write_mp4(folder / "short_audio.mp4", audio_seconds=2.0)
    cut_at_packet(folder / "short_audio.mp4", folder / "cut_video.mp4", 0.8)
    return folder


def prepare(*args: str):
    return run_cli(["prepare", *args, "--no-progress", "-j", "1"])


def test_files_cut_short_fail_as_truncated(videos, tmp_path):
    out = tmp_path / "out"
    names = ["intact", "short_audio", "cut_both", "cut_video"]
    result = prepare(*[str(videos / f"{name}.mp4") for name in names], "-o", str(out))
    assert result.exit_code == 0, result.stderr
    # short_audio is intact: its audio stream declares 2 s and holds 2 s (the video runs on to 4 s)
    assert "prepared 2, skipped 0 (already done), failed 2" in result.stdout
    assert "failed (truncated): 2" in result.stdout
    reasons = {f["video_id"]: f["reason"] for f in json.loads((out / "prepare_report.json").read_text())["failed"]}
    assert reasons["cut_both"].startswith("truncated: the audio ends at ")
    assert "declares 4.00 s" in reasons["cut_both"]
    assert reasons["cut_video"].startswith("truncated: the video ends at ")
    assert "declares 4.00 s" in reasons["cut_video"]
    assert [e["video_id"] for e in json.loads((out / "datafile.json").read_text())["data"]] == ["intact", "short_audio"]
    assert not (out / "audio" / "cut_both.wav").exists() and not (out / "frames" / "frame_0" / "cut_video.jpg").exists()


def test_frames_past_the_stream_end_are_noted(videos, tmp_path):
    """Intact file, metadata frame count larger than what decodes: frames repeat and the report says so."""
    from cavkit.data import prepare as prep
    from cavkit.data.video import frame_count_and_rate

    # 40 frames decode; pretend the container promised 50 (as edit lists or VFR files do)
    def promise_more(stream, container=None):
        count, fps = frame_count_and_rate(stream, container)
        return count + 10, fps

    options = prep.PrepareOptions(out=str(tmp_path / "out"), num_frames=10, frame_method="linspace")
    original = prep.frame_count_and_rate
    prep.frame_count_and_rate = promise_more
    try:
        summary = prep.prepare([str(videos / "intact.mp4")], options, progress=False)
    finally:
        prep.frame_count_and_rate = original
    assert summary.count("prepared") == 1
    # linspace(0, 49, 10) -> 0, 5, 10, 16, 21, 27, 32, 38, 43, 49: the last two are past frame 39
    assert summary.results[0].note == "2 of 10 frames repeat the last decoded frame (the metadata promised 50 frames)"
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["clip_notes"] == [{"video_id": "intact", "source": str(videos / "intact.mp4"), "note": summary.results[0].note}]
    assert any("prepared with a note: 1" in line for line in summary.lines())


def test_other_settings_are_not_skipped_as_already_done(videos, tmp_path):
    out = tmp_path / "out"
    source = str(videos / "intact.mp4")
    assert prepare(source, "-o", str(out), "--image-size", "64").exit_code == 0
    assert json.loads((out / "prepare_settings.json").read_text())["image_size"] == 64
    for flags, named in [(["--image-size", "32"], "image_size 64; this run asks for image_size 32"),
                         (["--image-size", "64", "--frame-method", "linspace"], "frame_method cavmae; this run asks for frame_method linspace"),
                         (["--image-size", "64", "--frames", "8"], "num_frames 10; this run asks for num_frames 8")]:
        result = prepare(source, "-o", str(out), *flags)
        assert result.exit_code == 2, result.stdout
        assert "skipped" not in result.stdout
        assert named in result.stderr and "--overwrite" in result.stderr and "Traceback" not in result.stderr
    with Image.open(out / "frames" / "frame_0" / "intact.jpg") as image:
        assert image.size == (64, 64)
    # same settings: skipped; --overwrite: redone at the new size and recorded
    assert "prepared 0, skipped 1" in prepare(source, "-o", str(out), "--image-size", "64").stdout
    result = prepare(source, "-o", str(out), "--image-size", "32", "--overwrite")
    assert result.exit_code == 0 and "prepared 1, skipped 0" in result.stdout
    with Image.open(out / "frames" / "frame_0" / "intact.jpg") as image:
        assert image.size == (32, 32)
    assert "prepared 0, skipped 1" in prepare(source, "-o", str(out), "--image-size", "32").stdout


def test_an_interrupted_overwrite_run_is_not_mistaken_for_done(videos, tmp_path):
    out = tmp_path / "out"
    source = str(videos / "intact.mp4")
    assert prepare(source, "-o", str(out)).exit_code == 0
    settings = json.loads((out / "prepare_settings.json").read_text())
    assert settings["overwrite_unfinished"] is False
    # as if a run with --overwrite and another image size was killed before it ended
    (out / "prepare_settings.json").write_text(json.dumps({**settings, "image_size": 112, "overwrite_unfinished": True}))
    result = prepare(source, "-o", str(out), "--image-size", "112")
    assert result.exit_code == 2 and "interrupted" in result.stderr and "--overwrite" in result.stderr


def test_relative_output_folder_gives_a_readable_datafile(videos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = prepare(str(videos / "intact.mp4"), "-o", "rel/out")
    assert result.exit_code == 0, result.stderr
    entry = json.loads((tmp_path / "rel" / "out" / "datafile.json").read_text())["data"][0]
    assert entry["wav"] == os.path.join(str(tmp_path), "rel", "out", "audio", "intact.wav")
    monkeypatch.chdir(videos)  # the datafile reads the same from anywhere
    dataset = CavMaeDataset(CavMaeDataConfig(datafile=str(tmp_path / "rel" / "out" / "datafile.json"), mode="eval", image_size=64))
    assert dataset[0]["clip_id"] == "intact" and dataset[0]["audio"].shape == (1024, 128)
    check = run_cli(["data", "check", str(tmp_path / "rel" / "out" / "datafile.json"), "--frames", "10", "--strict"])
    assert check.exit_code == 0, check.stdout


def test_an_edit_list_clip_is_noted_not_failed(samples_dir, tmp_path):
    """A real clip whose mp4 counts 400 frames but whose edit list shows 299: linspace asks past the end."""
    clip = samples_dir / "KlsG1EnBEjc_000361.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    result = prepare(str(clip), "-o", str(tmp_path / "out"), "--frames", "16", "--frame-method", "linspace")
    assert result.exit_code == 0, result.stderr
    assert "prepared 1, skipped 0 (already done), failed 0" in result.stdout
    assert "KlsG1EnBEjc_000361: 4 of 16 frames repeat the last decoded frame (the metadata promised 400 frames)" in result.stdout

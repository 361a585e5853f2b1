"""`cavkit prepare` into a read-only or full disk: one line naming the path, exit 2, no clip reported as
"failed" for the disk's fault, nothing half-written (issue 16 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cavkit.data.configs import SyntheticDataConfig
from cavkit.data.synthetic import generate_clip, write_video
from cavkit.testing import run_cli

SYNTH = SyntheticDataConfig(num_clips=2, num_frames=4, image_size=32, audio_length=300)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for i in range(2):
        write_video(str(folder / f"clip{i}.mp4"), generate_clip(SYNTH, i), SYNTH)
    return folder


def prepare(videos: Path, out: Path, *extra: str):
    return run_cli(
        ["prepare", str(videos), "-o", str(out), "--frames", "4", "--image-size", "32", "--no-progress", *extra]
    )


def test_prepare_into_a_read_only_folder_is_one_line(videos, read_only_dir, one_line_write_error):
    folder, cause = read_only_dir
    out = folder / "prepared"
    one_line_write_error(prepare(videos, out), out, cause)
    assert not out.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_prepare_onto_a_full_disk_stops_and_leaves_no_partial_file(
    videos, tmp_path, disk_full, one_line_write_error, workers
):
    out = tmp_path / "prepared"
    disk_full(".wav")  # the first clip's audio runs out of space (in the worker process with -j 2)
    result = prepare(videos, out, "-j", workers)
    message = one_line_write_error(result, out, "No space left on device (ENOSPC)")
    assert message.split(": ")[1].endswith(".wav") and "failed" not in result.stdout
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in written if p.suffix in (".wav", ".tmp")]
    assert not (out / "datafile.json").exists()

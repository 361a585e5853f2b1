"""`cavkit convert` into a read-only or full disk: one line naming the file, exit 2, nothing half-written
(issue 16 item 4)."""

from __future__ import annotations

from cavkit.testing import run_cli

HEADS = ["--set", "encoder.num_heads=2", "--set", "decoder.num_heads=2"]


def test_convert_into_a_read_only_folder_is_one_line(official_file, read_only_dir, one_line_write_error):
    folder, cause = read_only_dir
    src, _ = official_file("cavmae_tiny")
    dst = folder / "m.safetensors"
    result = run_cli(["convert", str(src), str(dst), *HEADS])
    one_line_write_error(result, dst, cause)
    assert list(folder.iterdir()) == []


def test_convert_onto_a_full_disk_leaves_no_partial_file(official_file, tmp_path, disk_full, one_line_write_error):
    src, _ = official_file("cavmae_tiny")
    dst = tmp_path / "out" / "m.safetensors"
    disk_full("m.safetensors")
    result = run_cli(["convert", str(src), str(dst), *HEADS])
    message = one_line_write_error(result, dst, "No space left on device (ENOSPC); free some space")
    assert message.endswith("write to another output path")
    assert not dst.exists() and list((tmp_path / "out").iterdir()) == []

"""`cavkit embed` and `cavkit inpaint` into a read-only or full disk: one line naming the file, exit 2,
nothing half-written (issue 16 item 4)."""

from __future__ import annotations

from pictures_helpers import synthetic_args

from cavkit.testing import run_cli


def test_embed_into_a_read_only_folder_is_one_line(tiny_weights, read_only_dir, one_line_write_error):
    folder, cause = read_only_dir
    out = folder / "emb.npz"
    result = run_cli(["embed", "--checkpoint", tiny_weights, *synthetic_args(num_clips=2), "--out", str(out)])
    one_line_write_error(result, out, cause)
    assert list(folder.iterdir()) == []


def test_embed_onto_a_full_disk_leaves_no_partial_file(tiny_weights, tmp_path, disk_full, one_line_write_error):
    out = tmp_path / "emb.safetensors"
    disk_full("emb.safetensors")
    result = run_cli(["embed", "--checkpoint", tiny_weights, *synthetic_args(num_clips=2), "--out", str(out)])
    one_line_write_error(result, out, "No space left on device (ENOSPC)")
    assert list(tmp_path.iterdir()) == []


def test_inpaint_pictures_into_a_read_only_folder_is_one_line(tiny_weights, read_only_dir, one_line_write_error):
    folder, cause = read_only_dir
    out = folder / "pictures"
    result = run_cli(
        ["inpaint", "--checkpoint", tiny_weights, *synthetic_args(), "--num-clips", "1", "--out", str(out)]
    )
    message = one_line_write_error(result, out, cause)
    assert message.split(": ")[1].endswith(".png")

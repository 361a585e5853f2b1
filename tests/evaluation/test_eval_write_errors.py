"""`cavkit eval retrieval --json` into a read-only or full disk: one line naming the file, exit 2, no
partial JSON (issue 16 item 4)."""

from __future__ import annotations

import torch

from cavkit.evaluation.features import Features
from cavkit.testing import run_cli


def features_file(folder):
    g = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(12, 2, 8, generator=g), dim=-1)
    visual = torch.nn.functional.normalize(audio + 0.5 * torch.randn(12, 2, 8, generator=g), dim=-1)
    path = folder / "feats.safetensors"
    Features(audio, visual, torch.eye(12), [f"clip{i}" for i in range(12)], "global").save(str(path))
    return path


def test_eval_json_into_a_read_only_folder_is_one_line(tmp_path, read_only_dir, one_line_write_error):
    folder, cause = read_only_dir
    out = folder / "retrieval.json"
    result = run_cli(["eval", "retrieval", "--features", str(features_file(tmp_path)), "--json", str(out)])
    one_line_write_error(result, out, cause)
    assert "R@1" in result.stdout and list(folder.iterdir()) == []  # the table was printed before the write


def test_eval_json_onto_a_full_disk_leaves_no_partial_file(tmp_path, disk_full, one_line_write_error):
    out = tmp_path / "res" / "retrieval.json"
    disk_full("retrieval.json")
    result = run_cli(["eval", "retrieval", "--features", str(features_file(tmp_path)), "--json", str(out)])
    one_line_write_error(result, out, "No space left on device (ENOSPC)")
    assert list((tmp_path / "res").iterdir()) == []

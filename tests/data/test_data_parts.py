"""Small parts: the Sync frame->segment mapping, label vectors, sample weights, prepare inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cavkit.data import datafile as df
from cavkit.data.fbank import segment_bounds
from cavkit.data.prepare import list_videos, video_id_of
from cavkit.data.shards import expand_urls


def test_sync_segments_as_published():
    windows = [segment_bounds(i, 16, 1024, 416) for i in range(16)]
    assert windows[:4] == [(0, 416)] * 4
    assert windows[13:] == [(608, 1024)] * 3
    assert windows[8] == (512 - 208, 512 + 208)
    assert len(set(windows)) == 11
    assert len({segment_bounds(i, 16, 1024, 96) for i in range(16)}) == 16
    assert len({segment_bounds(i, 16, 1024, 192) for i in range(16)}) == 15
    assert all(end - start == 416 for start, end in windows)


def test_label_vectors_smoothing_and_mixup():
    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    assert df.label_vector(("a", "c"), index).tolist() == [1, 0, 1, 0]
    assert df.label_vector(("b",), index, 0.1).tolist() == pytest.approx([0.025, 0.9, 0.025, 0.025])
    mixed = df.mixed_label_vector(("a",), ("a", "d"), index, 0.7, 0.1)
    assert mixed.tolist() == pytest.approx([0.025 + 0.63 + 0.27, 0.025, 0.025, 0.025 + 0.27])


def test_sample_weights_formula():
    labels = df.LabelMap(("x", "y", "z"), ("X", "Y", "Z"))
    clips = [df.Clip("1", "w", "v", ("x",)), df.Clip("2", "w", "v", ("x", "y")), df.Clip("3", "w", "v", ("x",))]
    weights = df.sample_weights(clips, labels)
    assert weights.tolist() == pytest.approx([1000 / 3.01, 1000 / 3.01 + 1000 / 1.01, 1000 / 3.01])
    assert df.weights_uri("/d/train.json") == "/d/train_weight.csv"


def test_relative_datafile_paths_resolve_against_its_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.json").write_text(json.dumps({"data": [{"video_id": "x", "wav": "a/x.wav", "video_path": "/abs/frames", "labels": "m"}]}))
    (clip,) = df.load_datafile(str(tmp_path / "sub" / "d.json"))
    assert clip.wav == str(tmp_path / "sub" / "a" / "x.wav")
    assert clip.frame_uri(3) == "/abs/frames/frame_3/x.jpg"


def test_prepare_inputs_folders_lists_and_globs(tmp_path):
    (tmp_path / "v" / "deep").mkdir(parents=True)
    for name in ["a.mp4", "deep/b.mkv", "notes.txt"]:
        (tmp_path / "v" / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("v/a.mp4\n# comment\n\n/elsewhere/c.mp4\n")
    assert [video_id_of(p) for p in list_videos([str(tmp_path / "v")])] == ["a", "b"]
    assert list_videos([str(tmp_path / "list.txt")]) == [str(tmp_path / "v" / "a.mp4"), "/elsewhere/c.mp4"]
    assert [video_id_of(p) for p in list_videos([str(tmp_path / "v" / "*.mp4")])] == ["a"]
    assert video_id_of("s3://bucket/x/-abc_30.000.mp4") == "-abc_30.000"


def test_shard_url_expansion(tmp_path):
    for i in range(3):
        (tmp_path / f"shard-{i:06d}.tar").write_bytes(b"")
    assert expand_urls(["s-{008..011}.tar"]) == ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"]
    assert len(expand_urls([str(tmp_path / "shard-*.tar")])) == 3
    assert np.all([u.endswith(".tar") for u in expand_urls([str(tmp_path / "shard-{000000..000002}.tar")])])


def test_clip_table_round_trips_clips():
    clips = [df.Clip("ü-1", "/a/ü.wav", "/f", ("/m/x", "/m/y")), df.Clip("2", "memory://w/2.wav", "memory://f", ())]
    table = df.ClipTable(clips)
    assert len(table) == 2 and list(table) == clips and table[1] == clips[1]
    assert table._ids.dtype.kind == "S"  # bytes, not Python objects: no copy-on-read in workers

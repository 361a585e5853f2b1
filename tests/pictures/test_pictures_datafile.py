"""The picture commands on a datafile (spec §6.1): wav files and frame JPEGs written here."""

from __future__ import annotations

import json

from pictures_helpers import write_clips

from cavkit.testing import run_cli


DATA = ["--data=segment_length=32", "--data=image_size=32", "--data=num_frames=4"]


def test_datafile_clips_embed_inpaint_and_localize(tiny_weights, tmp_path):
    from cavkit.pictures.export import read_embeddings

    datafile = write_clips(tmp_path)
    out = tmp_path / "emb.npz"
    result = run_cli(
        ["embed", "--checkpoint", tiny_weights, "--datafile", datafile, *DATA, "--kind", "global", "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    arrays, ids = read_embeddings(str(out))
    assert ids == ["vid0", "vid1", "vid2"] and arrays["audio_global"].shape == (3, 4, 32)

    result = run_cli(
        [
            "inpaint",
            "--checkpoint",
            tiny_weights,
            "--datafile",
            datafile,
            *DATA,
            "--clip",
            "vid2",
            "--clip",
            "vid0",
            "--out",
            str(tmp_path / "inp"),
        ]
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "inp").glob("*.png")) == [
        "vid0_unstructured_a0.75_v0.75.png",
        "vid2_unstructured_a0.75_v0.75.png",
    ]

    result = run_cli(
        ["localize", "--checkpoint", tiny_weights, "--datafile", datafile, *DATA, "--out", str(tmp_path / "loc")]
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "loc" / "vid1").glob("frame_*.png"))) == 4
    scores = json.loads((tmp_path / "loc" / "scores.json").read_text())
    assert "centre_prior" not in scores and "no ground truth" in result.stderr

    result = run_cli(
        [
            "inpaint",
            "--checkpoint",
            tiny_weights,
            "--datafile",
            datafile,
            *DATA,
            "--clip",
            "nope",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert result.exit_code == 2 and "nope" in result.stderr

"""The picture commands on a datafile (spec §6.1): wav files and frame JPEGs written here."""

from __future__ import annotations

import json
import wave

import numpy as np
from PIL import Image

from cavkit.testing import run_cli


def _write_clips(root, count=3, frames=4):
    entries = []
    for c in range(count):
        vid = f"vid{c}"
        t = np.arange(int(1.5 * 16000)) / 16000
        pcm = (0.3 * np.sin(2 * np.pi * (300 + 200 * c) * t) * 32767).astype(np.int16)
        with wave.open(str(root / f"{vid}.wav"), "wb") as fh:
            fh.setnchannels(1)
            fh.setsampwidth(2)
            fh.setframerate(16000)
            fh.writeframes(pcm.tobytes())
        for k in range(frames):
            folder = root / "frames" / f"frame_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.full((32, 32, 3), 40 * c, np.uint8)
            pixels[8 * (k % 4) : 8 * (k % 4) + 8, 8:16] = 255
            Image.fromarray(pixels).save(folder / f"{vid}.jpg", quality=90)
        entries.append({"video_id": vid, "wav": f"{vid}.wav", "video_path": "frames", "labels": ""})
    datafile = root / "clips.json"
    datafile.write_text(json.dumps({"data": entries}))
    return str(datafile)


DATA = ["--data=segment_length=32", "--data=image_size=32", "--data=num_frames=4"]


def test_datafile_clips_embed_inpaint_and_localize(tiny_weights, tmp_path):
    from cavkit.pictures.export import read_embeddings

    datafile = _write_clips(tmp_path)
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

"""`cavkit inpaint`, `localize`, `embed` and `report` on a tiny trained model and synthetic clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pictures_helpers import synthetic_args
from PIL import Image

from cavkit.testing import run_cli


def _run(args):
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr[-3000:]
    return result


# -- inpaint --------------------------------------------------------------------------------------
def test_inpaint_writes_figures_and_pastes_only_removed_patches(tiny_weights, tmp_path):
    out = tmp_path / "inpaint"
    _run(
        [
            "inpaint",
            "--checkpoint",
            tiny_weights,
            *synthetic_args(),
            "--num-clips",
            "2",
            "--mode",
            "unstructured",
            "--mode",
            "time",
            "--ratio",
            "0.75",
            "--ratio",
            "0.5",
            "--visual-ratio",
            "0.75",
            "--arrays",
            "--out",
            str(out),
        ]
    )
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 2 * 2 * 2 and "test-000000_time_a0.5_v0.75.png" in pngs
    for name in pngs:
        assert Image.open(out / name).size == (1200, 700)  # 12 x 7 inches at 100 dpi (docs/pictures.md)
    for npz_path in out.glob("*.npz"):
        a = np.load(npz_path)
        assert a["image"].shape == (3, 32, 32) and a["fbank"].shape == (32, 128)
        for x, masked, pasted, mask in (
            ("image", "image_masked", "image_pasted", "image_mask"),
            ("fbank", "fbank_masked", "fbank_pasted", "fbank_mask"),
        ):
            m = np.broadcast_to(a[mask], a[x].shape).astype(bool)
            assert m.any() and not m.all()
            np.testing.assert_array_equal(a[pasted][~m], a[x][~m])  # visible patches untouched
            np.testing.assert_array_equal(a[masked][~m], a[x][~m])
            assert np.all(a[masked][m] == 0)
            assert np.all(a[pasted][m] != a[masked][m])  # the model filled every removed value
        # the visual grid is 2x2: ratio 0.75 removes 3 of 4 patches
        assert a["image_mask"].mean() == pytest.approx(0.75)


def test_inpaint_arrays_match_a_direct_model_call(tiny_weights, tmp_path):
    from cavkit.api import load_model
    from cavkit.data.configs import SyntheticDataConfig
    from cavkit.data.synthetic import SyntheticDataset
    from cavkit.pictures.inpaint import build_masker, inpaint
    from cavkit.plugins import get_plugin_host

    registry = get_plugin_host().registry

    out = tmp_path / "one"
    _run(
        [
            "inpaint",
            "--checkpoint",
            tiny_weights,
            *synthetic_args(),
            "--clip",
            "test-000003",
            "--seed",
            "5",
            "--arrays",
            "--out",
            str(out),
        ]
    )
    saved = np.load(out / "test-000003_unstructured_a0.75_v0.75.npz")
    model = load_model(tiny_weights)
    item = SyntheticDataset(SyntheticDataConfig(layout="sync", mode="eval", split="test", num_clips=6, **_small()))[3]
    torch.manual_seed(5)
    result, output = inpaint(
        model,
        item["audio"][None],
        item["image"][None],
        audio_masker=build_masker("unstructured", 0.75, registry=registry),
        visual_masker=build_masker("unstructured", 0.75, registry=registry),
    )
    np.testing.assert_allclose(saved["image_pasted"], result.image_pasted[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(saved["fbank_mask"], result.fbank_mask[0].numpy())
    # pasted values are the decoder's predictions, unpatchified
    pred = model.visual_tokenizer.unpatchify(output.pred_visual)[0].numpy()
    m = saved["image_mask"].astype(bool).repeat(3, axis=0)
    np.testing.assert_allclose(saved["image_pasted"][m], pred[m], atol=1e-6)


def _small():
    from pictures_helpers import SMALL

    return dict(SMALL)


def test_inpaint_refuses_norm_pix_and_unrecorded_checkpoints(tiny_weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(tiny_weights, "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(tiny_weights)
    norm_pix = tmp_path / "normpix.safetensors"
    save_file(
        tensors,
        str(norm_pix),
        metadata={**meta, "recipe": meta["recipe"].replace("norm_pix_loss: false", "norm_pix_loss: true")},
    )
    result = run_cli(["inpaint", "--checkpoint", str(norm_pix), *synthetic_args(), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "norm_pix_loss: true" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()

    converted = tmp_path / "converted.safetensors"
    _run(["convert", tiny_weights, str(converted), "--to", "cavkit"])
    result = run_cli(["inpaint", "--checkpoint", str(converted), *synthetic_args(), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "--pixel-targets" in result.stderr
    _run(
        [
            "inpaint",
            "--checkpoint",
            str(converted),
            *synthetic_args(),
            "--num-clips",
            "1",
            "--pixel-targets",
            "--out",
            str(tmp_path / "y"),
        ]
    )
    assert len(list((tmp_path / "y").glob("*.png"))) == 1

    official = tmp_path / "official.pth"  # the upstream layout: plain state dict, no recipe
    _run(["convert", tiny_weights, str(official), "--to", "upstream"])
    result = run_cli(["inpaint", "--checkpoint", str(official), *synthetic_args(), "--out", str(tmp_path / "z")])
    assert result.exit_code == 2 and "Official .pth files cannot tell" in result.stderr
    _run(
        [
            "inpaint",
            "--checkpoint",
            str(official),
            *synthetic_args(),
            "--num-clips",
            "1",
            "--pixel-targets",
            "--set",
            "encoder.num_heads=2",
            "--set",
            "decoder.num_heads=2",
            "--out",
            str(tmp_path / "z"),
        ]
    )
    assert len(list((tmp_path / "z").glob("*.png"))) == 1


# -- localize -------------------------------------------------------------------------------------
@pytest.mark.parametrize("animation,suffix", [("gif", "gif"), ("apng", "png")])
def test_localize_writes_frames_animation_and_scores(tiny_weights, tmp_path, animation, suffix):
    out = tmp_path / "loc"
    result = _run(
        [
            "localize",
            "--checkpoint",
            tiny_weights,
            *synthetic_args(),
            "--num-clips",
            "3",
            "--scale",
            "2",
            "--animation",
            animation,
            "--out",
            str(out),
        ]
    )
    for clip in ("test-000000", "test-000001", "test-000002"):
        frames = sorted((out / clip).glob("frame_*.png"))
        assert [p.name for p in frames] == [f"frame_{k:02d}.png" for k in range(4)]
        assert all(Image.open(p).size == (64, 64) for p in frames)
        anim = Image.open(out / f"{clip}.{suffix}")
        assert anim.size == (64, 64) and anim.n_frames == 4
    scores = json.loads((out / "scores.json").read_text())
    assert scores["embedding"] == "global" and scores["drawn"] == "audio_centred"
    for name in ("plain", "audio_centred", "centre_prior"):
        # the same frames (those with an object, among 3 clips x 4 frames) are scored by every method
        assert 1 <= scores[name]["frames"] <= 3 * 4 and scores[name]["frames"] == scores["plain"]["frames"]
        assert 0 <= scores[name]["iou"] <= 1
    # the centre prior's maximum is the 4 middle pixels of the even-sized frame, so each frame scores
    # 0, 1/4, ..., 1 and the mean over the frames is a whole number of quarters per frame
    quarters = scores["centre_prior"]["pointing_game"] * scores["centre_prior"]["frames"] * 4
    assert quarters == pytest.approx(round(quarters), abs=1e-4)
    assert "centre prior" in result.stdout


def test_localize_maps_follow_the_embeddings(tiny_weights):
    """The drawn map is the cosine of the (centred) audio embedding with each patch token, upsampled."""
    from cavkit.api import load_model
    from cavkit.data.configs import SyntheticDataConfig
    from cavkit.data.synthetic import SyntheticDataset
    from cavkit.pictures.inpaint import IMAGE_MEAN, IMAGE_STD
    from cavkit.pictures.localize import clip_maps, embed_clip, mean_audio

    model = load_model(tiny_weights)
    data = SyntheticDataset(SyntheticDataConfig(layout="sync", mode="retrieval", split="test", num_clips=2, **_small()))
    clips = [embed_clip(model, data[i], image_mean=IMAGE_MEAN, image_std=IMAGE_STD) for i in range(2)]
    emb = model.embed(data[1]["audio"], data[1]["image"])
    a = torch.nn.functional.normalize(emb.audio_global, dim=-1) - mean_audio(clips)
    direct = torch.nn.functional.cosine_similarity(a[:, None, :], emb.visual_patches, dim=-1).reshape(4, 2, 2)
    maps = clip_maps(clips[1], mean_audio(clips))
    assert maps.shape == (4, 32, 32)
    # at the centre of each 16x16 patch's quarter grid the bilinear map equals the patch value
    torch.testing.assert_close(maps[:, 8, 8], direct[:, 0, 0], atol=0.06, rtol=0)
    assert torch.equal(maps.flatten(1).argmax(1) // 32 < 16, direct.flatten(1).argmax(1) < 2)


def test_localize_needs_two_clips_to_centre(tiny_weights, tmp_path):
    result = run_cli(
        ["localize", "--checkpoint", tiny_weights, *synthetic_args(), "--num-clips", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "--centre none" in result.stderr
    _run(
        [
            "localize",
            "--checkpoint",
            tiny_weights,
            *synthetic_args(),
            "--num-clips",
            "1",
            "--centre",
            "none",
            "--out",
            str(tmp_path),
        ]
    )
    assert json.loads((tmp_path / "scores.json").read_text())["drawn"] == "plain"


# -- embed ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["safetensors", "npz"])
def test_embed_reloads_and_matches_a_direct_model_call(tiny_weights, tmp_path, suffix):
    from cavkit.api import load_model
    from cavkit.data.configs import SyntheticDataConfig
    from cavkit.data.synthetic import SyntheticDataset
    from cavkit.pictures.export import read_embeddings

    out = tmp_path / f"emb.{suffix}"
    result = _run(
        [
            "embed",
            "--checkpoint",
            tiny_weights,
            *synthetic_args(num_clips=5),
            "--kind",
            "global",
            "--kind",
            "pooled",
            "--kind",
            "patches",
            "--batch-size",
            "2",
            "--out",
            str(out),
        ]
    )
    assert "wrote 5 clips" in result.stdout
    arrays, ids = read_embeddings(str(out))
    assert ids == [f"test-{i:06d}" for i in range(5)]
    assert arrays["audio_global"].shape == (5, 4, 32) and arrays["visual_patches"].shape == (5, 4, 4, 32)
    assert arrays["audio_patches"].shape == (5, 4, 16, 32) and arrays["frames"].tolist() == [[0, 1, 2, 3]] * 5
    model = load_model(tiny_weights)
    data = SyntheticDataset(SyntheticDataConfig(layout="sync", mode="retrieval", split="test", num_clips=5, **_small()))
    with torch.no_grad():
        emb = model.embed(data[3]["audio"], data[3]["image"])
    for name in ("audio_global", "visual_global", "audio_pooled", "visual_pooled", "audio_patches", "visual_patches"):
        np.testing.assert_allclose(arrays[name][3], getattr(emb, name).numpy(), atol=1e-5, rtol=1e-5)


def test_embed_single_frame_and_memory_filesystem(tiny_weights):
    from cavkit.pictures.export import read_embeddings

    uri = "memory://pictures-test/emb.npz"
    _run(
        [
            "embed",
            "--checkpoint",
            tiny_weights,
            *synthetic_args(num_clips=3),
            "--single-frame",
            "--modality",
            "visual",
            "--dtype",
            "float16",
            "--out",
            uri,
        ]
    )
    arrays, ids = read_embeddings(uri)
    assert set(arrays) == {"visual_pooled"} and arrays["visual_pooled"].shape == (3, 32)
    assert arrays["visual_pooled"].dtype == np.float16 and len(ids) == 3


def test_embed_rejects_unknown_file_type(tiny_weights, tmp_path):
    result = run_cli(["embed", "--checkpoint", tiny_weights, *synthetic_args(), "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "*.safetensors or *.npz" in result.stderr


# -- report ---------------------------------------------------------------------------------------
def test_report_draws_curves_and_one_page_html(tiny_run, tmp_path):
    out = tmp_path / "report"
    _run(["report", str(tiny_run), "--out", str(out)])
    curves = sorted(p.name for p in (out / "curves").glob("*.png"))
    assert "train.png" in curves
    width, height = Image.open(out / "curves" / "train.png").size
    assert width >= 400 and height >= 300
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(curves)
    assert "type: cav_mae_sync" in page and "norm_pix_loss: false" in page  # recipe
    assert "cavkit" in page and "torch" in page  # versions
    assert "R@1" in page and "eval/retrieval/diagonal_mean/audio_to_visual" in page  # retrieval table
    assert "train/loss" in page  # final metrics


def test_report_default_folder_and_bad_run_dir(tiny_run, tmp_path):
    _run(["report", str(tiny_run)])
    assert (tiny_run / "report" / "index.html").exists()
    result = run_cli(["report", str(tmp_path)])
    assert result.exit_code == 2 and "run directory" in result.stderr


def test_report_embeds_pictures_found_in_the_run(tiny_run, tiny_weights, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _run(
        ["inpaint", "--checkpoint", tiny_weights, *synthetic_args(), "--num-clips", "2", "--out", str(run / "pictures")]
    )
    _run(["report", str(run)])
    page = (run / "report" / "index.html").read_text()
    curves = list((run / "report" / "curves").glob("*.png"))
    assert page.count("data:image/png;base64,") == len(curves) + 2
    assert "pictures/test-000001_unstructured_a0.75_v0.75.png" in page
    _run(["report", str(run)])  # a second report does not pick up the first one's curves
    assert (run / "report" / "index.html").read_text().count("data:image/png;base64,") == len(curves) + 2

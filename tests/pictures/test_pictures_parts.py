"""Unit tests of the model-independent picture parts: patches, heatmaps, scores, files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput
from cavkit.pictures import export, heatmap, localization, patches
from cavkit.pictures.inpaint import compose_inpainting, inpainting_figure


def test_image_patchify_roundtrip_and_channel_order():
    img = torch.randn(2, 3, 32, 48)
    tokens = patches.patchify_image(img, 16)
    assert tokens.shape == (2, 6, 768)
    # token 1 is row 0, column 1; within a patch the channel varies fastest (spec §1.5)
    assert torch.equal(tokens[0, 1, :3], img[0, :, 0, 16])
    assert torch.equal(tokens[0, 3, 3:6], img[0, :, 16, 1])
    assert torch.equal(patches.unpatchify_image(tokens, (2, 3)), img)


def test_fbank_patchify_is_frequency_major():
    fbank = torch.randn(1, 64, 128)  # T=64 -> 8 x 4 tokens
    tokens = patches.patchify_fbank(fbank)
    assert tokens.shape == (1, 32, 256)
    # token k <-> (f = k // 4, t = k % 4); in-patch (frequency row p, time column q)
    k, p, q = 6, 3, 5
    f, t = divmod(k, 4)
    assert tokens[0, k, p * 16 + q] == fbank[0, t * 16 + q, f * 16 + p]
    assert torch.equal(patches.unpatchify_fbank(tokens, 64), fbank)


def test_masks_spread_over_pixels_and_bins():
    mask = torch.tensor([[0, 1, 0, 0, 0, 1]])
    pix = patches.image_mask_to_pixels(mask, (2, 3), (32, 48))
    assert pix.shape == (1, 1, 32, 48)
    assert pix[0, 0, :16, 16:32].eq(1).all() and pix[0, 0, 16:, 32:].eq(1).all()
    assert pix.sum() == 2 * 256
    amask = torch.zeros(1, 32)
    amask[0, 5] = 1  # f=1, t=1 on an 8x4 grid
    bins = patches.fbank_mask_to_bins(amask, 64)
    assert bins.shape == (1, 64, 128)
    assert bins[0, 16:32, 16:32].eq(1).all() and bins.sum() == 256


def _fake_output(audio, image, seed=0):
    g = torch.Generator().manual_seed(seed)
    target_v = patches.patchify_image(image, 16)
    target_a = patches.patchify_fbank(audio)
    return ModelOutput(
        pred_audio=torch.randn(target_a.shape, generator=g),
        pred_visual=torch.randn(target_v.shape, generator=g),
        mask_audio=(torch.rand(target_a.shape[:2], generator=g) < 0.75).float(),
        mask_visual=(torch.rand(target_v.shape[:2], generator=g) < 0.75).float(),
    )


def test_pasted_reconstruction_keeps_visible_patches():
    audio, image = torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32)
    out = _fake_output(audio, image)
    res = compose_inpainting(audio, image, out)
    keep = res.image_mask == 0
    assert torch.equal(
        res.image_pasted.masked_select(keep.expand_as(image)), image.masked_select(keep.expand_as(image))
    )
    assert res.image_masked.masked_select(~keep.expand_as(image)).eq(0).all()
    removed = res.fbank_mask == 1
    assert torch.equal(res.fbank_pasted[~removed], audio[~removed])
    pred_a = patches.unpatchify_fbank(out.pred_audio, 64)
    assert torch.equal(res.fbank_pasted[removed], pred_a[removed])


def test_inpainting_figure_size():
    audio, image = torch.randn(1, 64, 128), torch.randn(1, 3, 32, 32)
    png = inpainting_figure(compose_inpainting(audio, image, _fake_output(audio, image)), 0, title="t")
    picture = Image.open(io.BytesIO(png))
    assert picture.size == (1200, 700)  # 12 x 7 inches at 100 dpi, as docs/pictures.md states


def test_similarity_maps_peak_at_the_matching_patch():
    d = 8
    visual = torch.randn(1, 4 * 4, d)
    audio = visual[:, 9].clone()
    maps = heatmap.similarity_maps(audio, visual, (4, 4))
    assert maps.shape == (1, 4, 4)
    assert maps[0, 2, 1] == pytest.approx(1.0) and maps.argmax() == 9
    up = heatmap.upsample_maps(maps, (64, 64))
    assert up.shape == (1, 64, 64)
    assert up[0].argmax() // 64 in range(32, 48) and up[0].argmax() % 64 in range(16, 32)


def test_overlay_and_animation():
    frame = np.zeros((24, 32, 3), np.uint8)
    heat = np.zeros((24, 32))
    heat[:, 16:] = 1.0
    pic = heatmap.overlay(frame, heat, alpha=0.5, cmap="jet")
    assert pic.size == (32, 24)
    arr = np.asarray(pic)
    assert arr[:, :16, 2].mean() > 40 and arr[:, 16:, 0].mean() > 40  # jet: blue at 0, red at 1
    for fmt in ("gif", "apng"):
        data = heatmap.animation_bytes([pic, pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], fmt, frame_ms=100)
        anim = Image.open(io.BytesIO(data))
        assert anim.n_frames == 2 and anim.size == (32, 24)


def test_pointing_game_and_iou():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 0:4, 0:4] = True
    maps = torch.zeros(2, 8, 8)
    maps[0, 1, 1] = 1.0  # on the object
    maps[1, 6, 6] = 1.0  # off
    assert localization.pointing_hits(maps, masks).tolist() == [1.0, 0.0]
    perfect = masks.float()
    scores = localization.score_maps(perfect, masks)
    assert scores.iou == 1.0 and scores.pointing == 1.0
    half = torch.zeros(1, 8, 8)
    half[0, 0:4, 0:8] = 1.0  # prediction 32 px, object 16 px inside it
    assert localization.threshold_iou(half, masks[:1]).item() == pytest.approx(0.5)
    flat = torch.ones(1, 8, 8)  # ties: fraction of tied maxima on the object
    assert localization.pointing_hits(flat, masks[:1]).item() == pytest.approx(16 / 64)


def test_centre_prior_wins_only_on_centred_objects():
    prior = localization.centre_prior(2, 16, 16)
    assert prior.shape == (2, 16, 16) and prior[0, 7:9, 7:9].eq(prior.max()).all()
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 5:11, 5:11] = True
    masks[1, 0:4, 0:4] = True
    assert localization.pointing_hits(prior, masks).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("suffix", ["safetensors", "npz"])
@pytest.mark.parametrize("root", ["memory://emb-test", "local"])
def test_embedding_files_roundtrip(tmp_path, suffix, root):
    base = str(tmp_path) if root == "local" else root
    uri = f"{base}/sub/emb.{suffix}"
    arrays = {
        "audio_pooled": np.random.randn(3, 5).astype(np.float32),
        "visual_patches": np.random.randn(3, 4, 5).astype(np.float16),
    }
    ids = ["a", "clip b", "ü"]
    export.write_embeddings(uri, arrays, ids)
    back, back_ids = export.read_embeddings(uri)
    assert back_ids == ids and set(back) == set(arrays)
    for k in arrays:
        assert back[k].dtype == arrays[k].dtype and np.array_equal(back[k], arrays[k])


def test_embedding_file_errors():
    with pytest.raises(UsageError, match="safetensors or \\*.npz"):
        export.format_from_path("x.pt")
    with pytest.raises(ValueError, match="rows"):
        export.embeddings_bytes({"a": np.zeros((2, 3))}, ["x"], "npz")

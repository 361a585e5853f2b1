"""``keep_register_tokens``: parity with the published code, and what our default slicing fixes.

The reference fixture ``sync_tiny_keepreg`` records the published Sync code with
``keep_register_tokens=True`` (../shared/fixtures/reference/README.md). The published code removes
the registers from the joint stream at the *unmasked* audio token count; cavkit reproduces that with
``encoder.register_slicing: published`` and by default removes them where they are (``exact``).
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from model_helpers import FIXTURES, fixture_meta, make_official_file

from cavkit.checkpoints.load import load_model
from cavkit.objectives.infonce import InfoNCE, SyncContrastive
from cavkit.objectives.mae import MAELoss

TOL = dict(atol=1e-5, rtol=1e-5)


def keepreg_fixtures() -> list[str]:
    """Every reference fixture whose constructor keeps the register tokens."""
    names = []
    for path in sorted(FIXTURES.glob("*.json")):
        ctor = json.loads(path.read_text()).get("constructor", {})
        if ctor.get("keep_register_tokens") and path.with_suffix(".safetensors").exists():
            names.append(path.stem)
    return names or [
        pytest.param("sync_tiny_keepreg", marks=pytest.mark.skip(reason=f"no keep-register fixture in {FIXTURES}"))
    ]


def _heads(name: str) -> dict:
    """Head counts from the fixture's constructor (checkpoints do not record them)."""
    ctor = fixture_meta(name)["constructor"]
    return {"encoder": {"num_heads": ctor["num_heads"]}, "decoder": {"num_heads": ctor["decoder_num_heads"]}}


def _load(tmp_path, name: str, slicing: str):
    path, tensors = make_official_file(tmp_path, name)
    overrides = {
        **_heads(name),
        "encoder": {**_heads(name)["encoder"], "keep_register_tokens": True, "register_slicing": slicing},
    }
    return load_model(str(path), overrides=overrides).eval(), tensors


def _close(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, **TOL), f"{what}: max abs error {err:.3g}"


@pytest.mark.parametrize("name", keepreg_fixtures())
def test_published_slicing_reproduces_the_fixture(tmp_path, name):
    model, t = _load(tmp_path, name, "published")
    meta = fixture_meta(name)
    with torch.no_grad():
        out = model(
            t["input.audio"], t["input.image"], noise_audio=t["noise.train.audio"], noise_visual=t["noise.train.image"]
        )
    assert torch.equal(out.mask_audio, t["out.train.mask_a"])
    assert torch.equal(out.mask_visual, t["out.train.mask_v"])
    mae = MAELoss(norm_pix_loss=meta["constructor"].get("norm_pix_loss", False))({}, out)
    train = meta["train"]
    assert mae.logs["mae_audio"].item() == pytest.approx(train["loss_mae_a"], abs=1e-5)
    assert mae.logs["mae_visual"].item() == pytest.approx(train["loss_mae_v"], abs=1e-5)
    contrast = (SyncContrastive() if meta["constructor"].get("cls_token") else InfoNCE())({}, out)
    weight = float(re.search(r"contrast_loss_weight=([0-9.e+-]+)", meta["call"]).group(1))
    assert weight * contrast.loss.item() == pytest.approx(train["loss_c_weighted"], abs=1e-6)
    assert contrast.logs["c_acc"].item() == pytest.approx(train["c_acc"], abs=1e-6)
    recon_a, recon_v = model.reconstruct(out)
    _close(recon_a.permute(0, 2, 3, 1), t["out.train.recon_a"], "recon_a")
    _close(recon_v.permute(0, 2, 3, 1), t["out.train.recon_v"], "recon_v")

    with torch.no_grad():
        emb = model.embed(t["input.audio"], t["input.image"])
    _close(emb.audio_patches, t["out.feat.audio_patches"], "feat audio_patches (registers kept, as published)")
    _close(emb.visual_patches, t["out.feat.image_patches"], "feat image_patches (registers kept, as published)")
    _close(emb.audio_global, t["out.feat.audio_global"], "feat audio_global")
    _close(emb.visual_global, t["out.feat.image_global"], "feat image_global")


@pytest.mark.parametrize("name", keepreg_fixtures())
def test_exact_slicing_differs_only_where_published_is_wrong(tmp_path, name):
    """Default ``exact``: same masks, global tokens and contrastive loss; embeddings without the
    registers (the published ones minus their last R tokens); a decoder input with every visible
    visual token, hence different reconstructions under masking."""
    published, t = _load(tmp_path, name, "published")
    exact, _ = _load(tmp_path, name, "exact")
    r = fixture_meta(name)["constructor"]["num_register_tokens"]
    args = (t["input.audio"], t["input.image"])
    noise = dict(noise_audio=t["noise.train.audio"], noise_visual=t["noise.train.image"])
    with torch.no_grad():
        out_p, out_e = published(*args, **noise), exact(*args, **noise)
        emb_e = exact.embed(*args)
    assert torch.equal(out_e.mask_audio, out_p.mask_audio)
    _close(out_e.audio_global, out_p.audio_global, "global audio token (joint stream not involved)")
    _close(out_e.visual_tokens, out_p.visual_tokens, "visual patch latents")
    assert not torch.allclose(out_e.pred_visual, out_p.pred_visual, atol=1e-3), "the decoder input should differ"
    _close(emb_e.audio_patches, t["out.feat.audio_patches"][:, :-r], "exact embeddings = published minus registers")
    _close(emb_e.visual_patches, t["out.feat.image_patches"][:, :-r], "exact embeddings = published minus registers")


@pytest.mark.parametrize("name", keepreg_fixtures())
def test_slicings_agree_without_masking(tmp_path, name):
    """With nothing masked the visible audio count is the unmasked one: both slicings feed the decoder alike."""
    published, t = _load(tmp_path, name, "published")
    exact, _ = _load(tmp_path, name, "exact")
    b = t["input.audio"].shape[0]
    for model in (published, exact):
        model.audio_masker.ratio = model.visual_masker.ratio = 0.0
    na, nv = t["noise.train.audio"].shape[1], t["noise.train.image"].shape[1]
    noise = dict(noise_audio=torch.rand(b, na), noise_visual=torch.rand(b, nv))
    with torch.no_grad():
        out_p = published(t["input.audio"], t["input.image"], **noise)
        out_e = exact(t["input.audio"], t["input.image"], **noise)
    _close(out_e.pred_visual, out_p.pred_visual, "pred_visual without masking")
    _close(out_e.pred_audio, out_p.pred_audio, "pred_audio without masking")


def test_keep_flag_changes_the_published_outputs(tmp_path):
    """Loading the keep-register fixture without the flag does not reproduce it (the flag matters)."""
    names = [n for n in keepreg_fixtures() if isinstance(n, str)]
    if not names:
        pytest.skip(f"no keep-register fixture in {FIXTURES}")
    path, t = make_official_file(tmp_path, names[0])
    model = load_model(str(path), overrides=_heads(names[0])).eval()
    with torch.no_grad():
        emb = model.embed(t["input.audio"], t["input.image"])
    assert not torch.allclose(emb.audio_global, t["out.feat.audio_global"], atol=1e-3)

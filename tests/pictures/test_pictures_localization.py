"""Sound localization on the synthetic set, where the sounding object's pixels are known.

Slow test (about 80 s wall, 25 s CPU per model on 2 shared cores): `cavkit train` runs a tiny
model (64-px frames, 8-px patches, 2+1 blocks of width 64) for 200 steps on 256 synthetic clips with
``mae`` (``norm_pix_loss: false``) and the model's contrastive objective; then `cavkit localize`
scores 16 held-out clips (88 frames with the object in view). Measured when this test was written
(pointing game / IoU@0.5):

======================================  =============  =============  ============
model, audio embedding                  audio-centred  plain cosine   centre prior
======================================  =============  =============  ============
CAV-MAE + infonce, pooled               0.520 / 0.354  0.233 / 0.131  0.259 / 0.154
Sync + sync_contrastive, global token   0.523 / 0.296  0.514 / 0.224  0.259 / 0.154
Sync + sync_contrastive, pooled         0.528 / 0.309  0.594 / 0.242  0.259 / 0.154
======================================  =============  =============  ============

The plain cosine map of the CAV-MAE model is worse than the prior (its maximum is mostly off the
object); removing the audio component the InfoNCE leaves untrained (see
:func:`cavkit.pictures.localize.mean_audio`) makes it point at the object twice as often as the
prior. For the Sync model both maps beat the prior; centring raises the IoU. The fast test checks
the centring mechanism on constructed embeddings.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cavkit.testing import run_cli

RECIPE = """
cavkit: 1
seed: 0
model:
  type: {model}
  audio_length: 64
  image_size: 64
  embed_dim: 64
  visual_tokenizer: {{type: image_patch, patch_size: 8}}
  encoder: {{depth: 2, num_heads: 4{registers}}}
  decoder: {{embed_dim: 32, depth: 1, num_heads: 2}}
objectives:
  - {{type: mae, weight: 1.0, norm_pix_loss: false}}
  - {{type: {contrastive}, weight: 1.0}}
data:
  train: {{type: synthetic, layout: sync, mode: train, num_clips: 256, split: train, image_size: 64,
          segment_length: 64}}
trainer:
  max_steps: 200
  batch_size: 32
  log_every: 25
  eval_every_epochs: 0
  optimizer: {{name: adam, lr: 1.0e-3}}
  schedule: {{type: constant}}
run: {{dir: "{run_dir}", keep_last: 1}}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,contrastive,registers",
    [("cav_mae", "infonce", ""), ("cav_mae_sync", "sync_contrastive", ", num_register_tokens: 2")],
)
def test_a_briefly_trained_model_localizes_better_than_the_centre_prior(tmp_path, model, contrastive, registers):
    recipe = tmp_path / "loc.yaml"
    recipe.write_text(
        RECIPE.format(run_dir=tmp_path / "run", model=model, contrastive=contrastive, registers=registers)
    )
    result = run_cli(["train", str(recipe), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr[-3000:]
    out = tmp_path / "loc"
    result = run_cli(
        [
            "localize",
            "--checkpoint",
            str(tmp_path / "run" / "weights" / "final.safetensors"),
            "--dataset-type",
            "synthetic",
            "--data=layout=sync",
            "--data=split=test",
            "--data=num_clips=16",
            "--data=image_size=64",
            "--data=segment_length=64",
            "--num-clips",
            "16",
            "--score-only",
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    scores = json.loads((out / "scores.json").read_text())
    model, prior = scores["audio_centred"], scores["centre_prior"]
    assert model["frames"] == prior["frames"] >= 60
    assert model["pointing_game"] > prior["pointing_game"] + 0.1, scores
    assert model["iou"] > prior["iou"], scores


def test_centring_removes_the_shared_audio_component():
    """Embeddings built like the trained model's: every audio vector carries a large shared part that
    the background patches match, and the clip-specific part that the object patches carry. The plain
    map points at the background; the centred map points at the object and beats the centre prior."""
    from cavkit.pictures.localization import centre_prior, score_maps
    from cavkit.pictures.localize import ClipEmbedding, clip_maps, mean_audio

    gen = torch.Generator().manual_seed(0)
    d, grid, size = 16, (4, 4), 32
    shared = F.normalize(torch.randn(d, generator=gen), dim=0)
    clips, masks = [], []
    for c in range(6):
        specific = F.normalize(torch.randn(d, generator=gen), dim=0)
        audio = (3 * shared + specific)[None]  # one frame
        patches = shared + 0.1 * torch.randn(1, 16, d, generator=gen)  # background: the shared part
        cell = int(torch.randint(0, 16, (1,), generator=gen))
        patches[0, cell] = specific + 0.1 * torch.randn(d, generator=gen)  # the object: the clip's own part
        mask = torch.zeros(1, size, size, dtype=torch.bool)
        r, col = divmod(cell, 4)
        mask[0, r * 8 : r * 8 + 8, col * 8 : col * 8 + 8] = True
        masks.append(mask)
        clips.append(
            ClipEmbedding(f"c{c}", audio, patches, grid, [torch.zeros(size, size, 3).numpy()], [0], mask, "pooled")
        )
    gt = torch.cat(masks)
    plain = torch.cat([clip_maps(c) for c in clips])
    centred = torch.cat([clip_maps(c, mean_audio(clips)) for c in clips])
    prior = score_maps(centre_prior(6, size, size), gt)
    assert score_maps(plain, gt).pointing == 0.0
    assert score_maps(centred, gt).pointing == 1.0 > prior.pointing
    assert score_maps(centred, gt).iou > prior.iou

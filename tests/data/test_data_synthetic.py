"""The synthetic set: deterministic, both layouts, sound tied to picture in content, position and time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cavkit.data.configs import SyntheticDataConfig
from cavkit.data.fbank import segment_bounds
from cavkit.data.synthetic import SyntheticDataset, generate_clip, pitch_hz, plan_clip
from cavkit.errors import RecipeError
from cavkit.recipe import load_recipe

SMALL = dict(num_clips=16, num_frames=8, image_size=32, audio_length=128, segment_length=32)


def test_same_seed_same_clip_and_splits_differ():
    a = generate_clip(SyntheticDataConfig(**SMALL), 3)
    b = generate_clip(SyntheticDataConfig(**SMALL), 3)
    assert np.array_equal(a.waveform, b.waveform) and np.array_equal(a.frames, b.frames)
    c = generate_clip(SyntheticDataConfig(split="test", **SMALL), 3)
    assert not np.array_equal(a.waveform, c.waveform)


@pytest.mark.parametrize(
    "layout, mode, audio, image, mask",
    [
        ("cav_mae", "train", (128, 128), (3, 32, 32), (32, 32)),
        ("cav_mae", "eval", (128, 128), (3, 32, 32), (32, 32)),
        ("sync", "train", (32, 128), (3, 32, 32), (32, 32)),
        ("sync", "eval", (32, 128), (3, 32, 32), (32, 32)),
        ("sync", "retrieval", (8, 32, 128), (8, 3, 32, 32), (8, 32, 32)),
    ],
)
def test_item_shapes_and_collate(layout, mode, audio, image, mask):
    ds = SyntheticDataset(SyntheticDataConfig(layout=layout, mode=mode, **SMALL))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["audio"].shape == (4, *audio)
    assert batch["image"].shape == (4, *image)
    assert batch["object_mask"].shape == (4, *mask)
    assert batch["label"].shape == (4, 8) and batch["label"].sum(1).eq(1).all()
    assert len(batch["clip_id"]) == 4 and torch.isfinite(batch["audio"]).all()
    if mode == "eval":
        assert batch["frame"].eq(4).all()


def test_invalid_combinations_are_recipe_errors(tmp_path):
    with pytest.raises(ValueError, match="needs layout 'sync'"):
        SyntheticDataConfig(layout="cav_mae", mode="retrieval", **SMALL)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("cavkit: 1\nmodel: {type: cav_mae_sync}\ndata:\n  train: {type: synthetic, layout: cav_mae, mode: retrieval, segment_length: 999}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(str(recipe), [])
    assert "data.train: mode 'retrieval' needs layout 'sync'" in str(info.value)


def test_sound_plays_exactly_in_the_segments_of_visible_frames():
    """Time tie: a segment centred on a visible frame is loud, on an invisible frame quiet."""
    cfg = SyntheticDataConfig(layout="sync", mode="retrieval", segment_length=8, num_clips=24, num_frames=8, image_size=32, audio_length=128)
    ds = SyntheticDataset(cfg)
    loud, quiet = [], []
    for i in range(len(ds)):
        item = ds[i]
        energy = item["audio"].mean(dim=(1, 2))
        for k in range(cfg.num_frames):
            (loud if item["visible"][k] else quiet).append(float(energy[k]))
            assert bool(item["object_mask"][k].any()) == bool(item["visible"][k])
    assert quiet and min(loud) > max(quiet)


def test_height_sets_pitch():
    """Position tie: the loudest mel bin of a visible frame's segment rises as the object rises."""
    cfg = SyntheticDataConfig(layout="sync", mode="retrieval", num_classes=1, segment_length=8, num_clips=12, num_frames=8, image_size=32, audio_length=128)
    ds = SyntheticDataset(cfg)
    heights, peaks = [], []
    for i in range(len(ds)):
        plan = plan_clip(cfg, i)
        item = ds[i]
        for k in np.flatnonzero(plan.visible):
            heights.append(plan.height[k])
            peaks.append(int(item["audio"][k].mean(0).argmax()))
    assert np.corrcoef(heights, peaks)[0, 1] < -0.9  # higher on screen (smaller height) -> higher bin
    assert pitch_hz(np.array([0.0]))[0] > pitch_hz(np.array([1.0]))[0]


def test_object_mask_marks_the_object_colour():
    ds = SyntheticDataset(SyntheticDataConfig(layout="sync", mode="retrieval", **SMALL))
    item = ds[0]
    k = int(np.flatnonzero(item["visible"].numpy())[0])
    mask = item["object_mask"][k]
    inside = item["image"][k][:, mask].mean(1)
    outside = item["image"][k][:, ~mask].mean(1)
    assert (inside - outside).abs().max() > 1.0


def test_segments_follow_the_sync_mapping():
    cfg = SyntheticDataConfig(layout="sync", mode="retrieval", **SMALL)
    ds = SyntheticDataset(cfg)
    full = ds.fbank(0)
    item = ds[0]
    for k in range(cfg.num_frames):
        start, end = segment_bounds(k, cfg.num_frames, cfg.audio_length, cfg.segment_length)
        assert torch.equal(item["audio"][k], full[start:end])


def test_a_tiny_model_learns_the_correspondence_in_seconds():
    """Two 3-layer CNNs trained contrastively for 48 steps retrieve held-out clips far above chance.

    Retrieval uses all K frames (diagonal mean of per-frame similarities), so the tie in time
    (which frames show the object / play the sound) and position (height <-> pitch) count, not
    only the class.
    """
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    small = dict(image_size=32, audio_length=128, segment_length=32, num_frames=8)
    train = SyntheticDataset(SyntheticDataConfig(layout="sync", mode="train", num_clips=256, **small))
    test = SyntheticDataset(SyntheticDataConfig(layout="sync", mode="retrieval", num_clips=64, split="test", **small))

    def encoder(channels):
        return nn.Sequential(
            nn.Conv2d(channels, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1), nn.GELU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 32),
        )

    audio_net, image_net = encoder(1), encoder(3)
    optimizer = torch.optim.Adam([*audio_net.parameters(), *image_net.parameters()], 2e-3)

    def embed(audio, image):
        return F.normalize(audio_net(audio.unsqueeze(1)), dim=-1), F.normalize(image_net(image), dim=-1)

    def recall_at_1():
        with torch.no_grad():
            batch = next(iter(DataLoader(test, batch_size=64)))
            n, k = batch["audio"].shape[:2]
            a, v = embed(batch["audio"].flatten(0, 1), batch["image"].flatten(0, 1))
            scores = torch.einsum("ikd,jkd->ij", a.view(n, k, -1), v.view(n, k, -1)) / k
            return (scores.argmax(1) == torch.arange(n)).float().mean().item()

    chance = 1 / 64
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and fair to a shared machine
    try:
        train_steps(train, embed, optimizer)
        assert recall_at_1() > 8 * chance
    finally:
        torch.set_num_threads(threads)


def train_steps(train, embed, optimizer, epochs: int = 12):
    from torch.nn import functional as F

    for _ in range(epochs):
        for batch in DataLoader(train, batch_size=64, shuffle=True):
            a, v = embed(batch["audio"], batch["image"])
            logits = a @ v.T / 0.07
            target = torch.arange(len(a))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

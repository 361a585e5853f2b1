"""What the contrastive objectives log: with ``direction: both``, c_acc is the mean of the two directions."""

from __future__ import annotations

import pytest
import torch

from cavkit.interfaces import ModelOutput
from cavkit.objectives.infonce import InfoNCE, SyncContrastive


def _features():
    # seed 0: visual->audio top-1 is 0/4, audio->visual 1/4 on these pooled features
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)


def test_both_directions_log_the_mean_c_acc_as_published():
    a, v = _features()
    out = ModelOutput(audio_tokens=a[:, None], visual_tokens=v[:, None], audio_global=a, visual_global=v)
    v2a = InfoNCE(direction="visual_to_audio")({}, out).logs["c_acc"].item()
    a2v = InfoNCE(direction="audio_to_visual")({}, out).logs["c_acc"].item()
    assert (v2a, a2v) == (0.0, 0.25)
    assert InfoNCE(direction="both")({}, out).logs["c_acc"].item() == pytest.approx(0.125)
    assert SyncContrastive(direction="both")({}, out).logs["c_acc"].item() == pytest.approx(0.125)

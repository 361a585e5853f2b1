"""`cavkit prepare --model NAME` takes the frame count from the registered model's input declaration
(InputSpec), not from its name: built-ins keep 10 (cav_mae) and 16 (cav_mae_sync), a plugin model
gets its own, --frames still overrides, an unknown name is one message listing the registered models."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import torch

from cavkit import hookimpl
from cavkit.config import param
from cavkit.data.commands import model_frames
from cavkit.data.synthetic import generate_clip, write_video
from cavkit.data.configs import SyntheticDataConfig
from cavkit.models.inputs import InputSpec
from cavkit.testing import plugin_host, run_cli

VIDEO = SyntheticDataConfig(num_clips=1, num_frames=8, image_size=48, audio_length=300)


@attrs.frozen(kw_only=True)
class PlainConfig:
    width: int = param(8, help="projection width")


class SixFrameModel(torch.nn.Module):
    """Declares whole-clip inputs trained on 6 frames per clip."""

    input_spec = InputSpec(layout="clip", audio_length=64, image_size=32, num_frames=6)

    def __init__(self, config: PlainConfig):
        super().__init__()
        self.proj = torch.nn.Linear(128, config.width)


class SegmentModel(torch.nn.Module):
    """Declares per-frame segments without a frame count: the Sync dataset's default applies."""

    input_spec = InputSpec(layout="frame_segments", audio_length=32, image_size=32)

    def __init__(self, config: PlainConfig):
        super().__init__()
        self.proj = torch.nn.Linear(128, config.width)


class FramesPlugin:
    @hookimpl
    def cavkit_register_components(self, registry):
        registry.add("model", "six_frame_model", SixFrameModel, PlainConfig)
        registry.add("model", "segment_model", SegmentModel, PlainConfig)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(str(path), generate_clip(VIDEO, 0), VIDEO)
    return path


def _prepare(video: Path, out: Path, *args: str, host=None):
    return run_cli(["prepare", str(video), "-o", str(out), "--image-size", "16", "-j", "1", "--no-progress", *args], host=host)


def _frame_folders(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "frames").iterdir())


@pytest.mark.parametrize(("model", "frames"), [("cav_mae", 10), ("cav_mae_sync", 16)])
def test_the_built_in_models_keep_their_published_frame_counts(video, tmp_path, model, frames):
    result = _prepare(video, tmp_path / "out", "--model", model)
    assert result.exit_code == 0, result.stderr
    assert _frame_folders(tmp_path / "out") == sorted(f"frame_{i}" for i in range(frames))
    assert json.loads((tmp_path / "out" / "prepare_settings.json").read_text())["num_frames"] == frames


def test_a_plugin_model_gets_the_frame_count_it_declares_and_frames_overrides_it(video, tmp_path):
    host = plugin_host(FramesPlugin())
    result = _prepare(video, tmp_path / "six", "--model", "six_frame_model", host=host)
    assert result.exit_code == 0, result.stderr
    assert _frame_folders(tmp_path / "six") == [f"frame_{i}" for i in range(6)]
    result = _prepare(video, tmp_path / "three", "--model", "six_frame_model", "--frames", "3", host=host)
    assert result.exit_code == 0, result.stderr
    assert _frame_folders(tmp_path / "three") == ["frame_0", "frame_1", "frame_2"]


def test_a_declared_layout_without_a_frame_count_takes_that_layouts_dataset_default():
    host = plugin_host(FramesPlugin())
    assert model_frames("segment_model", host) == 16  # frame segments: the cav_mae_sync dataset's num_frames
    assert model_frames("classifier", host) == 10  # a built-in whole-clip model other than cav_mae
    assert model_frames("sync_classifier", host) == 16


def test_an_unknown_model_is_one_message_listing_the_registered_ones(video, tmp_path):
    host = plugin_host(FramesPlugin())
    result = _prepare(video, tmp_path / "out", "--model", "cav_mea", host=host)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "--model: unknown model 'cav_mea'; did you mean 'cav_mae'" in result.stderr
    assert (
        "the registered models are audio_classifier, cav_mae, cav_mae_sync, classifier, segment_model, "
        "six_frame_model, sync_classifier" in result.stderr
    )
    assert not (tmp_path / "out").exists()  # nothing was written

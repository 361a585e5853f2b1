"""Dataset parameters (attrs; this module imports no torch so `cavkit components show` stays light).

Defaults reproduce the published loaders (spec §6.3 CAV-MAE, §6.4 Sync); fine-tuning recipes turn
on SpecAugment, mixup, noise and label smoothing explicitly.
"""

from __future__ import annotations

from typing import Literal

import attrs

from cavkit.config import at_least, in_range, param

NORM_MEAN = -5.081
NORM_STD = 4.4849


@attrs.frozen(kw_only=True)
class _FileData:
    """Shared by the datasets that read the published datafile layout."""

    datafile: str = param(help="datafile JSON (fsspec URI); relative wav/video_path entries resolve against its folder")
    label_csv: str | None = param(None, help="label CSV 'index,mid,display_name'; without it items carry no 'label'")
    label_smoothing: float = param(0.0, help="label smoothing ls: negatives ls/C, positives 1-ls (FT: 0.1)", validator=in_range(0.0, 1.0))
    weights_file: str | None = param(None, help="per-clip sampling weights CSV; default: computed from the labels (1000/(count+0.01) summed per clip)")
    mean: float = param(NORM_MEAN, help="fbank normalisation mean")
    std: float = param(NORM_STD, help="fbank normalisation std (the divisor is std, not 2 std)")
    image_size: int = param(224, help="frame side after Resize(bicubic)+CenterCrop", validator=at_least(16))
    limit: int | None = param(None, help="keep only the first n datafile entries", validator=at_least(1))
    skip_bad_clips: bool = param(False, help="drop (and count) clips whose audio or frame is missing/corrupt instead of raising DataError")


@attrs.frozen(kw_only=True)
class CavMaeDataConfig(_FileData):
    """CAV-MAE dataset (spec §6.3): one frame and the whole-clip fbank ``[target_length,128]``."""

    mode: Literal["train", "eval"] = param("train", help="train: random frame + augmentations; eval: fixed frame, no augmentation")
    target_length: int = param(1024, help="fbank frames after zero-padding/cutting", validator=at_least(1))
    num_frames: int = param(10, help="frames per clip on disk; train draws randint(0, num_frames-1)", validator=at_least(1))
    eval_frame: int | None = param(None, help="frame used in eval mode (default num_frames // 2 = 5)", validator=at_least(0))
    frame_fallback: bool = param(True, help="a missing frame file steps down to the nearest lower index that exists (published)")
    freqm: int = param(0, help="SpecAugment frequency-mask width bound (FT: 48); train mode only", validator=at_least(0))
    timem: int = param(0, help="SpecAugment time-mask width bound (FT: 192); train mode only", validator=at_least(0))
    mixup: float = param(0.0, help="probability of waveform+image+label mixup with Beta(10,10) (FT: 0.5); train mode only", validator=in_range(0.0, 1.0))
    noise: bool = param(False, help="add U[0,1)*u/10 noise and roll the time axis (published pretraining and FT); train mode only")

    def __attrs_post_init__(self) -> None:
        _check_frame(self.eval_frame, self.num_frames)


@attrs.frozen(kw_only=True)
class SyncDataConfig(_FileData):
    """CAV-MAE Sync dataset (spec §6.4): frames paired with their frame-aligned fbank segments."""

    mode: Literal["train", "eval", "retrieval"] = param("train", help="train: one random frame; eval: frame num_frames//2; retrieval: all frames [K,...]")
    segment_length: int = param(416, help="fbank rows per segment (the published loader's target_length)", validator=at_least(1))
    spectrogram_length: int = param(1024, help="whole-clip fbank rows before segmenting (published: hard-coded 1024)", validator=at_least(1))
    num_frames: int = param(16, help="frames per clip on disk (frame_0..frame_{K-1})", validator=at_least(1))
    eval_frame: int | None = param(None, help="frame used in eval mode (default num_frames // 2 = 8)", validator=at_least(0))
    augmentation: bool = param(False, help="RandomResizedCrop(0.08-1, ratio 0.9-1.1) + horizontal flip in train mode")

    def __attrs_post_init__(self) -> None:
        _check_frame(self.eval_frame, self.num_frames)
        if self.segment_length > self.spectrogram_length:
            raise ValueError(f"segment_length ({self.segment_length}) must be <= spectrogram_length ({self.spectrogram_length})")


@attrs.frozen(kw_only=True)
class ShardsDataConfig:
    """Tar shards written by ``cavkit prepare --shards``, streamed through fsspec (IterableDataset)."""

    urls: list[str] = param(help="shard URIs; each may be a glob ('data/shards/*.tar') or a brace range ('shard-{000000..000009}.tar')")
    layout: Literal["cav_mae", "sync"] = param("cav_mae", help="item layout: CAV-MAE (one frame + whole fbank) or Sync (frame + segment)")
    mode: Literal["train", "eval", "retrieval"] = param("train", help="as in cav_mae / cav_mae_sync (retrieval: sync layout only)")
    label_csv: str | None = param(None, help="label CSV; default: labels.csv beside the shards when present")
    label_smoothing: float = param(0.0, help="label smoothing", validator=in_range(0.0, 1.0))
    mean: float = param(NORM_MEAN, help="fbank normalisation mean")
    std: float = param(NORM_STD, help="fbank normalisation std")
    image_size: int = param(224, help="frame side", validator=at_least(16))
    target_length: int = param(1024, help="cav_mae layout: fbank frames", validator=at_least(1))
    segment_length: int = param(416, help="sync layout: segment rows", validator=at_least(1))
    spectrogram_length: int = param(1024, help="sync layout: whole-clip rows", validator=at_least(1))
    num_frames: int | None = param(None, help="frames to use per clip (default: 10 for cav_mae as published, all stored frames for sync)", validator=at_least(1))
    eval_frame: int | None = param(None, help="eval-mode frame (default num_frames // 2)", validator=at_least(0))
    freqm: int = param(0, help="cav_mae layout, train: SpecAugment frequency-mask bound", validator=at_least(0))
    timem: int = param(0, help="cav_mae layout, train: SpecAugment time-mask bound", validator=at_least(0))
    noise: bool = param(False, help="cav_mae layout, train: noise + time roll (mixup needs random access: use cav_mae)")
    shuffle_buffer: int = param(0, help="train mode: shuffle items through a buffer of this size (0: shard order)", validator=at_least(0))
    skip_bad_clips: bool = param(False, help="drop (and count) clips with corrupt members instead of raising DataError")

    def __attrs_post_init__(self) -> None:
        _check_layout(self.layout, self.mode)


@attrs.frozen(kw_only=True)
class SyntheticDataConfig:
    """A generated audio-visual set where sound and picture are tied (see :mod:`cavkit.data.synthetic`)."""

    layout: Literal["cav_mae", "sync"] = param("sync", help="cav_mae: one frame + whole fbank; sync: frame + its segment")
    mode: Literal["train", "eval", "retrieval"] = param("train", help="train: random frame; eval: middle frame; retrieval (sync): all K frames")
    num_clips: int = param(256, help="clips in the set", validator=at_least(1))
    num_classes: int = param(8, help="object classes (shape+colour <-> timbre), at most 8", validator=in_range(1, 8))
    num_frames: int = param(8, help="frames per clip K", validator=at_least(1))
    image_size: int = param(64, help="frame side in pixels", validator=at_least(16))
    audio_length: int = param(256, help="whole-clip fbank rows (10 ms each)", validator=at_least(16))
    segment_length: int = param(64, help="sync layout: fbank rows per frame segment", validator=at_least(1))
    seed: int = param(0, help="generation seed; together with split it fixes every clip")
    split: str = param("train", help="a name mixed into the seed so train/val/test sets differ")
    mean: float = param(-6.4, help="fbank normalisation mean (measured on this generator)")
    std: float = param(3.8, help="fbank normalisation std (measured on this generator)")

    def __attrs_post_init__(self) -> None:
        _check_layout(self.layout, self.mode)
        if self.segment_length > self.audio_length:
            raise ValueError(f"segment_length ({self.segment_length}) must be <= audio_length ({self.audio_length})")


@attrs.frozen(kw_only=True)
class SegmentationDataConfig:
    """(image, binary mask, audio) triples from a segmentation datafile (see :mod:`cavkit.data.segmentation`)."""

    datafile: str = param(help="segmentation datafile JSON {'data': [{'id', 'image', 'mask', 'wav'}, ...]}; relative paths resolve against its folder")
    audio_length: int = param(1024, help="fbank rows fed to the model, cut from the middle of the clip (`cavkit eval segmentation` sets the model's)", validator=at_least(1))
    image_size: int = param(224, help="image side after Resize(short side, bicubic)+CenterCrop (`cavkit eval segmentation` sets the model's)", validator=at_least(16))
    pad_audio: bool = param(False, help="zero-pad clips shorter than audio_length (as the published CAV-MAE loader pads to 1024) instead of refusing them")
    mean: float | None = param(None, help="fbank normalisation mean (default: the datafile's 'fbank_mean', else the published -5.081)")
    std: float | None = param(None, help="fbank normalisation std (default: the datafile's 'fbank_std', else the published 4.4849)")
    limit: int | None = param(None, help="keep only the first n datafile entries", validator=at_least(1))


def _check_layout(layout: str, mode: str) -> None:
    if layout == "cav_mae" and mode == "retrieval":
        raise ValueError("mode 'retrieval' needs layout 'sync' (the cav_mae layout has one frame per item)")


def _check_frame(frame: int | None, num_frames: int) -> None:
    if frame is not None and frame >= num_frames:
        raise ValueError(f"eval_frame ({frame}) must be < num_frames ({num_frames})")

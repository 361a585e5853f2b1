"""The published log-mel filterbank, its padding and normalisation, and Sync's segments (spec §6.3-6.4).

All fbanks are ``[T, 128]`` float32: T frames of 10 ms, 128 mel bins.
"""

from __future__ import annotations

import contextlib

import torch
import torchaudio.compliance.kaldi as kaldi

from cavkit.data.audio import SAMPLE_RATE

#: Normalisation statistics of the published recipes (AudioSet; used for VGGSound too).
NORM_MEAN = -5.081
NORM_STD = 4.4849
#: Mel bins.
NUM_MEL_BINS = 128


@contextlib.contextmanager
def single_threaded():
    """Run small per-item tensor work on one intra-op thread, then restore the setting.

    An fbank of a 10 s clip is a few ms of work split into many small ops; with OpenMP threads on a
    busy machine each op waits for a free core and an item can take 100x longer (measured: 2 ms
    single-threaded vs 500-800 ms with 2 threads on a loaded 2-core machine). DataLoader workers
    already run single-threaded; this makes ``num_workers=0`` behave the same.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kaldi_fbank(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Log-mel fbank of a mono waveform ``[samples]`` -> ``[frames, 128]`` exactly as published.

    The waveform mean is removed first; then ``torchaudio.compliance.kaldi.fbank`` with hanning
    window, 128 bins, dither 0, 10 ms shift and kaldi defaults otherwise (25 ms window, preemphasis
    0.97, snip_edges) -- spec §6.3 step 2. ``samples`` >= 400 (one 25 ms window).
    """
    return _fbank_centred(waveform - waveform.mean(), sample_rate)


def _fbank_centred(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    return kaldi.fbank(
        waveform.unsqueeze(0),
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=NUM_MEL_BINS,
        dither=0.0,
        frame_shift=10,
    )


def fbank_rows(waveform: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Rows ``[start, end)`` of ``pad_or_crop(kaldi_fbank(waveform), >= end)``, computing only those rows.

    Kaldi frames are independent (row r reads samples ``[160 r, 160 r + 400)``; DC removal and
    preemphasis are per frame), so after removing the *whole clip's* mean, as the full computation
    does, fbank of the matching slice of samples gives the same rows. Rows past the clip's end are
    the zero padding. Sync train/eval items need one 416-row segment of 1024: 2.5x less work.
    """
    available = num_fbank_frames(waveform.numel())
    stop = min(end, available)
    if stop <= start:
        return torch.zeros(end - start, NUM_MEL_BINS)
    centred = waveform - waveform.mean()
    rows = _fbank_centred(centred[start * 160 : (stop - 1) * 160 + 400])
    return pad_or_crop(rows, end - start)


def num_fbank_frames(num_samples: int) -> int:
    """Frames kaldi produces for ``num_samples`` samples at 16 kHz (snip_edges: 400 window, 160 hop)."""
    return 0 if num_samples < 400 else 1 + (num_samples - 400) // 160


def pad_or_crop(fbank: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad at the end, or cut, the time axis of ``[T,128]`` to ``length`` frames (spec §6.3 step 3)."""
    missing = length - fbank.shape[0]
    if missing > 0:
        return torch.nn.functional.pad(fbank, (0, 0, 0, missing))
    return fbank[:length]


def normalize(fbank: torch.Tensor, mean: float = NORM_MEAN, std: float = NORM_STD) -> torch.Tensor:
    """``(fbank - mean) / std``: the divisor is std, not 2 std (quirk 11)."""
    return (fbank - mean) / std


def segment_bounds(frame: int, num_frames: int, total_length: int, segment_length: int) -> tuple[int, int]:
    """``(start, end)`` fbank rows of the audio segment paired with ``frame`` (spec §6.4).

    position = round(frame * total_length / num_frames); the window of ``segment_length`` rows is
    centred there and clamped inside ``[0, total_length)``. With 16 frames, 1024 rows and L = 416
    frames 0-3 share [0, 416) and frames 13-15 share [608, 1024) (quirk 20).
    """
    position = round(frame * total_length / num_frames)
    start = max(0, position - segment_length // 2)
    end = start + segment_length
    if end > total_length:
        end = total_length
        start = max(0, total_length - segment_length)
    return start, end


def segments(fbank: torch.Tensor, frames: list[int], num_frames: int, segment_length: int) -> torch.Tensor:
    """The segments of a whole-clip fbank ``[S,128]`` for ``frames`` -> ``[len(frames), L, 128]``."""
    total = fbank.shape[0]
    out = []
    for frame in frames:
        start, end = segment_bounds(frame, num_frames, total, segment_length)
        out.append(fbank[start:end])
    return torch.stack(out)

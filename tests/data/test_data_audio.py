"""Audio decoding: PCM WAV and FLAC (AudioSet's format) decode exactly; other rates resample to 16 kHz."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from cavkit.data.audio import AudioDecodeError, decode_audio, to_mono_16k
from cavkit.data.fbank import num_fbank_frames
from cavkit.data.video import wav_bytes


def encode(samples: np.ndarray, rate: int, fmt: str, codec: str) -> bytes:
    """int16 ``[channels, n]`` -> an audio file in memory, with PyAV."""
    layout = "stereo" if samples.shape[0] == 2 else "mono"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T.reshape(1, -1)), format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, codec", [("flac", "flac"), ("wav", "pcm_s16le")])
def test_lossless_files_decode_exactly(fmt, codec):
    samples = (np.random.default_rng(0).normal(0, 0.2, (2, 24000)) * 32767).astype(np.int16)
    waveform, rate = decode_audio(encode(samples, 16000, fmt, codec))
    assert rate == 16000 and waveform.shape == (2, 24000)
    assert np.array_equal(waveform * 32768.0, samples.astype(np.float32))


def test_other_rates_resample_to_16k_keeping_channel_0():
    t = np.arange(44100 * 2) / 44100
    left = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)])
    waveform, rate = decode_audio(encode(stereo, 44100, "flac", "flac"))
    mono = to_mono_16k(waveform, rate)
    assert abs(mono.numel() - 32000) <= 1
    spectrum = np.abs(np.fft.rfft(mono.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / mono.numel() - 440) < 2  # channel 0 (the tone), not a mix
    assert num_fbank_frames(mono.numel()) == 198


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00\x00\x00WAVE", b"not audio at all" * 10])
def test_garbage_is_a_decode_error(data):
    with pytest.raises(AudioDecodeError):
        decode_audio(data)


def test_wav_writer_round_trip():
    samples = np.arange(-1000, 1000, dtype=np.int16)
    waveform, rate = decode_audio(wav_bytes(samples))
    assert rate == 16000 and np.array_equal(waveform[0] * 32768.0, samples.astype(np.float32))

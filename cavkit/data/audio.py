"""Decoding audio to float waveforms, and resampling to 16 kHz mono.

The published loaders read the file with torchaudio (PCM scaled to [-1, 1]), use the file's own
sample rate and only channel 0 (spec §6.3, quirk 9). cavkit decodes with Python's ``wave`` for PCM
WAV (the common case after ``cavkit prepare``; identical values, much faster) and with PyAV for
everything else, keeps channel 0, and resamples to 16 kHz when the file has another rate
(deliberate fix of quirk 9).

A WAV whose header declares more samples than the file holds (a copy cut short) is an error, never
decoded as the part that is there: the loader would otherwise pad it with silence as if it were a
short clip.
"""

from __future__ import annotations

import io
import wave

import numpy as np

#: The sample rate every fbank is computed at.
SAMPLE_RATE = 16000
#: Fewest 16 kHz samples a clip needs: one 25 ms kaldi window (spec §6.3).
MIN_SAMPLES = 400
#: A WAV data-chunk size that streaming writers use for "unknown length" (not a truncation).
_UNKNOWN_WAV_LENGTH = 0xFFFFFFFF


class AudioDecodeError(ValueError):
    """The bytes are not decodable audio (or hold no samples)."""


class TruncatedAudioError(AudioDecodeError):
    """The file's header declares more audio than the file holds (cut short)."""


def samples_at_16k(num_samples: int, rate: int) -> int:
    """Samples a clip of ``num_samples`` at ``rate`` Hz has after resampling to 16 kHz (rounded up, as torchaudio)."""
    return -(-num_samples * SAMPLE_RATE // rate) if rate else 0


def _decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM WAV via the standard library: ``([channels, samples] float32, rate)``."""
    with wave.open(io.BytesIO(data), "rb") as w:
        channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    held = len(raw) // (width * channels)
    if held < n and (n + 1) * width * channels <= _UNKNOWN_WAV_LENGTH:
        raise TruncatedAudioError(
            f"truncated: the WAV header declares {n} samples ({n / rate:.2f} s) but the file holds {held} "
            f"({held / rate:.2f} s); the file was cut short, fetch or prepare it again"
        )
    if width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:  # 24-bit and friends: let PyAV do it
        raise wave.Error(f"sample width {width}")
    usable = (samples.size // channels) * channels
    return samples[:usable].reshape(-1, channels).T.copy(), rate


def _decode_av(data: bytes) -> tuple[np.ndarray, int]:
    """Any container/codec PyAV reads: ``([channels, samples] float32, rate)``."""
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio track")
            stream = container.streams.audio[0]
            chunks = []
            for frame in container.decode(stream):
                array = frame.to_ndarray()
                fmt = frame.format.name
                if not frame.format.is_planar:  # packed: [1, samples * channels], interleaved
                    array = array.reshape(-1, len(frame.layout.channels)).T
                if fmt.startswith("s16"):
                    array = array.astype(np.float32) / 32768.0
                elif fmt.startswith("s32"):
                    array = (array.astype(np.float64) / 2147483648.0).astype(np.float32)
                elif fmt.startswith("u8"):
                    array = (array.astype(np.float32) - 128.0) / 128.0
                else:
                    array = array.astype(np.float32)
                chunks.append(array)
            rate = stream.codec_context.sample_rate or stream.rate
    except AudioDecodeError:
        raise
    except Exception as exc:  # PyAV raises many error types (InvalidDataError, ValueError, ...)
        raise AudioDecodeError(f"undecodable audio ({exc})") from exc
    if not chunks:
        raise AudioDecodeError("no audio samples")
    return np.concatenate(chunks, axis=1), int(rate)


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode audio bytes to ``([channels, samples] float32 in [-1, 1], sample rate)``.

    Raises :class:`AudioDecodeError` for empty or non-audio data, :class:`TruncatedAudioError` for a
    WAV cut short.
    """
    if not data:
        raise AudioDecodeError("empty file")
    waveform = None
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            waveform, rate = _decode_wav(data)
        except TruncatedAudioError:
            raise
        except (wave.Error, EOFError, ValueError):
            waveform = None
    if waveform is None:
        waveform, rate = _decode_av(data)
    if waveform.shape[1] == 0:
        raise AudioDecodeError("no audio samples")
    return waveform, rate


def to_mono_16k(waveform: np.ndarray, rate: int):
    """Channel 0 as a float32 torch tensor ``[samples]`` at :data:`SAMPLE_RATE` (spec §6.3, quirk 9)."""
    import torch

    mono = torch.from_numpy(np.ascontiguousarray(waveform[0]))
    if rate != SAMPLE_RATE:
        import torchaudio.functional as AF

        mono = AF.resample(mono, rate, SAMPLE_RATE)
    return mono

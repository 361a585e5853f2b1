"""A sound-prompted segmentation set from the synthetic generator (``cavkit data synthetic-segmentation``).

Each triple is the middle frame ``K // 2`` of a synthetic clip (:mod:`cavkit.data.synthetic`) in
which the object is visible, its object mask, and the clip's whole sound::

    OUT/images/<id>.png   RGB frame (lossless)
    OUT/masks/<id>.png    0 / 255 object mask, same size
    OUT/audio/<id>.wav    16 kHz mono PCM16, ``audio_length`` fbank rows
    OUT/datafile.json     {"data": [{"id", "image", "mask", "wav"}, ...], "fbank_mean", "fbank_std"}

A model whose segment is the whole clip (CAV-MAE, ``audio_length`` rows) hears all of it; a Sync
model reads the middle ``segment_length`` rows, which are exactly the segment Sync pairs with frame
``K // 2`` (:func:`cavkit.data.fbank.segment_bounds`), so both see the audio they were trained with.
The datafile carries the generator's fbank statistics. Every file is written atomically and the
datafile last, so an interrupted run leaves no datafile pointing at missing files.
"""

from __future__ import annotations

import json

from cavkit.errors import UsageError


def write_synthetic_segmentation(out: str, config, count: int) -> list[str]:
    """Write ``count`` triples of the synthetic set ``config`` under ``out``; returns their ids.

    Clips whose middle frame does not show the object are passed over (the next index is used).
    """
    import io

    import numpy as np
    from PIL import Image

    from cavkit.data import storage
    from cavkit.data.synthetic import generate_clip
    from cavkit.data.video import wav_bytes

    def png(array) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    frame = config.num_frames // 2
    entries, ids, index = [], [], 0
    while len(ids) < count:
        if index >= 4 * count + 16:
            raise UsageError(f"the synthetic generator gave only {len(ids)} clips with the object in the middle frame")
        clip = generate_clip(config, index)
        index += 1
        if not clip.masks[frame].any():
            continue
        clip_id = f"{config.split}-{index - 1:06d}"
        samples = np.clip(np.round(clip.waveform * 32767.0), -32768, 32767).astype(np.int16)
        storage.write_bytes_atomic(storage.join(out, "images", f"{clip_id}.png"), png(clip.frames[frame]))
        mask = clip.masks[frame].astype(np.uint8) * 255
        storage.write_bytes_atomic(storage.join(out, "masks", f"{clip_id}.png"), png(mask))
        storage.write_bytes_atomic(storage.join(out, "audio", f"{clip_id}.wav"), wav_bytes(samples))
        entries.append(
            {
                "id": clip_id,
                "image": f"images/{clip_id}.png",
                "mask": f"masks/{clip_id}.png",
                "wav": f"audio/{clip_id}.wav",
            }
        )
        ids.append(clip_id)
    document = {
        "data": entries,
        "fbank_mean": config.mean,
        "fbank_std": config.std,
        "source": f"cavkit synthetic generator (seed {config.seed}, split {config.split!r}, frame {frame} of "
        f"{config.num_frames}, {config.audio_length} fbank rows)",
    }
    storage.write_text_atomic(storage.join(out, "datafile.json"), json.dumps(document, indent=1))
    return ids

"""Masked reconstruction of several clips: what ``cavkit inpaint`` draws (spec §9.1).

Every clip is masked and reconstructed once per audio masker and ratio (the image always with the
unstructured masker), with the torch seed set before each call so that a run is repeatable; each
result becomes ``<clip>_<mode>_a<ratio>_v<ratio>.png`` (and ``.npz`` with the tensors on request).
"""

from __future__ import annotations

import io
from typing import Any, Callable

import attrs
import numpy as np
import torch

from cavkit.io import join, write_bytes_atomic
from cavkit.pictures.inpaint import build_masker, inpaint, inpainting_figure, masked_mse
from cavkit.pictures.sources import safe_file_stem


@attrs.frozen(kw_only=True)
class InpaintOptions:
    """What to draw.

    :ivar modes: audio maskers (``unstructured``, ``time``, ``freq``, ``time_freq`` or a plugin's).
    :ivar audio_ratios: audio masking ratios in [0, 1); :ivar visual_ratio: the image's (``None``: the audio ratio).
    :ivar seed: torch seed set before every reconstruction (upstream: 2).
    :ivar arrays: also write ``.npz`` files with the original, masked and reconstructed tensors and masks.
    """

    modes: tuple[str, ...] = ("unstructured",)
    audio_ratios: tuple[float, ...] = (0.75,)
    visual_ratio: float | None = None
    seed: int = 2
    arrays: bool = False


def inpaint_clips(
    model: Any,
    items: list[dict[str, Any]],
    options: InpaintOptions,
    *,
    out_dir: str,
    device: torch.device,
    registry: Any,
    failed_plugins: list[str] | None = None,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Reconstruct ``items`` (dataset items: ``audio [T,128]``, ``image [3,H,W]``) and write the figures.

    :param registry: where the maskers are looked up (the caller's plugin registry).
    :returns: one row per figure: ``name``, ``clip_id``, ``mode``, ratios and masked MSEs.
    """
    rows = []
    for item in items:
        stem = safe_file_stem(item.get("clip_id", "clip"))
        audio = torch.as_tensor(item["audio"])[None].to(device)
        image = torch.as_tensor(item["image"])[None].to(device)
        for mode in options.modes:
            for ra in options.audio_ratios:
                rv = options.visual_ratio if options.visual_ratio is not None else ra
                torch.manual_seed(options.seed)
                result, _ = inpaint(
                    model,
                    audio,
                    image,
                    audio_masker=build_masker(mode, ra, registry=registry, failed_plugins=failed_plugins),
                    visual_masker=build_masker("unstructured", rv, registry=registry, failed_plugins=failed_plugins),
                )
                mse_a, mse_v = masked_mse(result)
                name = f"{stem}_{mode}_a{ra:g}_v{rv:g}"
                title = (
                    f"{item.get('clip_id')}: {mode} audio masking {ra:g}, visual {rv:g}  "
                    f"(masked MSE audio {mse_a:.3f}, visual {mse_v:.3f})"
                )
                write_bytes_atomic(join(out_dir, f"{name}.png"), inpainting_figure(result, 0, title=title))
                if options.arrays:
                    buffer = io.BytesIO()
                    np.savez(buffer, **result.arrays(0))
                    write_bytes_atomic(join(out_dir, f"{name}.npz"), buffer.getvalue())
                echo(f"wrote {join(out_dir, name + '.png')}  masked MSE audio {mse_a:.4f} visual {mse_v:.4f}")
                rows.append(
                    {
                        "name": name,
                        "clip_id": item.get("clip_id"),
                        "mode": mode,
                        "audio_ratio": ra,
                        "visual_ratio": rv,
                        "mse_audio": mse_a,
                        "mse_visual": mse_v,
                    }
                )
    return rows

"""Inpainting: masked input and pasted reconstruction of both modalities, drawn as one figure (spec §9.1).

The model reconstructs pixels only when it was trained without per-patch normalisation of the
targets (``norm_pix_loss: false``); a norm-pix model predicts standardised patches, which cannot
be pasted back into a picture. :func:`require_pixel_targets` refuses such checkpoints.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch

from cavkit.pictures.patches import (
    fbank_mask_to_bins,
    image_grid,
    image_mask_to_pixels,
    unpatchify_fbank,
    unpatchify_image,
)

#: ImageNet statistics used to normalise frames (spec §6.3); the figure undoes them.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)

#: Figure geometry: PNGs are exactly ``FIGURE_SIZE_INCHES × FIGURE_DPI`` pixels.
FIGURE_SIZE_INCHES = (12.0, 7.0)
FIGURE_DPI = 100


@dataclass
class Inpainting:
    """One batch of inpainting results; every tensor is in the model's normalised input space.

    :ivar image / image_masked / image_pasted: ``[B,3,H,W]``; masked = x·(1−m), pasted = x·(1−m) + pred·m.
    :ivar image_mask: ``[B,1,H,W]``, 1 where the patch was removed.
    :ivar fbank / fbank_masked / fbank_pasted: ``[B,T,F]``; :ivar fbank_mask: ``[B,T,F]``.
    """

    image: torch.Tensor
    image_masked: torch.Tensor
    image_pasted: torch.Tensor
    image_mask: torch.Tensor
    fbank: torch.Tensor
    fbank_masked: torch.Tensor
    fbank_pasted: torch.Tensor
    fbank_mask: torch.Tensor

    def arrays(self, index: int) -> dict[str, Any]:
        """Clip ``index`` as float32 NumPy arrays (for ``--arrays`` files and tests)."""
        return {name: getattr(self, name)[index].detach().float().cpu().numpy() for name in self.__dataclass_fields__}


def compose_inpainting(audio: torch.Tensor, image: torch.Tensor, output: Any) -> Inpainting:
    """Paste a :class:`~cavkit.interfaces.ModelOutput`'s predictions into the removed patches.

    :param audio: fbank ``[B,T,F]`` as fed to the model; :param image: ``[B,3,H,W]``.
    :param output: needs ``pred_audio [B,La,p²]``, ``pred_visual [B,Lv,p²·3]``, ``mask_audio``, ``mask_visual``.
    """
    for name in ("pred_audio", "pred_visual", "mask_audio", "mask_visual"):
        if getattr(output, name, None) is None:
            raise ValueError(f"the model output has no {name}; inpainting needs a model with an MAE decoder")
    image = image.float()
    audio = audio.float()
    _, _, h, w = image.shape
    grid = image_grid(output.pred_visual.shape[1], h, w)
    pred_image = unpatchify_image(output.pred_visual.float(), grid)
    m_img = image_mask_to_pixels(output.mask_visual, grid, (h, w))
    frames, bins = audio.shape[1], audio.shape[2]
    pred_fbank = unpatchify_fbank(output.pred_audio.float(), frames, bins)
    m_aud = fbank_mask_to_bins(output.mask_audio, frames, bins)
    return Inpainting(
        image=image,
        image_masked=image * (1 - m_img),
        image_pasted=image * (1 - m_img) + pred_image * m_img,
        image_mask=m_img,
        fbank=audio,
        fbank_masked=audio * (1 - m_aud),
        fbank_pasted=audio * (1 - m_aud) + pred_fbank * m_aud,
        fbank_mask=m_aud,
    )


def denormalize_image(image: torch.Tensor) -> torch.Tensor:
    """``[3,H,W]`` normalised -> ``[H,W,3]`` float in [0, 1] (clipped)."""
    mean = torch.tensor(IMAGE_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=image.dtype).view(3, 1, 1)
    return (image.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0)


def inpainting_figure(result: Inpainting, index: int, title: str = "") -> bytes:
    """PNG bytes of the 2×3 figure for clip ``index``: original / masked / reconstructed, image row on
    top and spectrogram row below (frequency upwards, one colour scale taken from the original)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3, gridspec_kw={"height_ratios": [1.6, 1.0]})
    names = ("original", "masked", "reconstructed")
    images = (result.image, result.image_masked, result.image_pasted)
    fbanks = (result.fbank, result.fbank_masked, result.fbank_pasted)
    spec = result.fbank[index].detach().cpu()
    vmin, vmax = float(spec.min()), float(spec.max())
    for col, name in enumerate(names):
        ax = axes[0, col]
        ax.imshow(denormalize_image(images[col][index].detach()).numpy())
        ax.set_title(f"image: {name}")
        ax.set_axis_off()
        ax = axes[1, col]
        ax.imshow(
            fbanks[col][index].detach().cpu().T.numpy(),
            origin="lower",
            aspect="auto",
            vmin=vmin,
            vmax=vmax,
            cmap="magma",
            interpolation="nearest",
        )
        ax.set_title(f"spectrogram: {name}")
        ax.set_xlabel("time frame")
        if col == 0:
            ax.set_ylabel("mel bin")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return buffer.getvalue()


# -- running a model --------------------------------------------------------------------------------
def build_masker(mode: str, ratio: float, *, registry: Any, failed_plugins: list[str] | None = None) -> Any:
    """A ``masker`` component of ``registry`` (``unstructured``, ``time``, ``freq``, ``time_freq``, or a plugin's).

    :param failed_plugins: names of plugins that failed to load (named when ``mode`` is unknown).
    """
    from cavkit.errors import UsageError

    spec = registry.get("masker", mode, failed_plugins=failed_plugins or [])
    try:
        config = spec.config_class()(ratio=ratio)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"masker {mode!r} cannot be built with ratio {ratio}: {exc}") from None
    return spec.build(config)


@torch.no_grad()
def inpaint(
    model: Any, audio: torch.Tensor, image: torch.Tensor, *, audio_masker: Any, visual_masker: Any
) -> tuple[Inpainting, Any]:
    """Mask, encode and reconstruct one batch with the given maskers (the model's own are restored after).

    :param audio: ``[B,T,F]``; :param image: ``[B,3,H,W]`` (normalised, as the datasets give them).
    :returns: the :class:`Inpainting` and the raw :class:`~cavkit.interfaces.ModelOutput`.
    """
    if not hasattr(model, "audio_masker") or not hasattr(model, "visual_masker"):
        raise ValueError(
            f"{type(model).__name__} has no audio_masker/visual_masker; inpainting needs a pretraining model"
        )
    saved = model.audio_masker, model.visual_masker
    model.audio_masker, model.visual_masker = audio_masker, visual_masker
    try:
        output = model(audio, image)
    finally:
        model.audio_masker, model.visual_masker = saved
    return compose_inpainting(audio, image, output), output


def masked_mse(result: Inpainting) -> tuple[float, float]:
    """Mean squared error over the removed patches only, ``(audio, visual)``, in the input space."""

    def one(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> float:
        m = m.expand_as(x)
        return float(((x - y) ** 2 * m).sum() / m.sum().clamp_min(1))

    return one(result.fbank_pasted, result.fbank, result.fbank_mask), one(
        result.image_pasted, result.image, result.image_mask
    )

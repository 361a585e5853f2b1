"""A tiny synthetic batch and :class:`~cavkit.interfaces.ModelOutput` for testing objectives."""

from __future__ import annotations

from typing import Any


def synthetic_model_output(batch_size: int = 4, dim: int = 16, num_classes: int = 5, *, generator: Any = None):
    """A tiny :class:`~cavkit.interfaces.ModelOutput` with every field set, and a matching batch.

    Tensors an objective may differentiate (predictions, tokens, logits) require gradients.

    :returns: ``(batch, output)``: ``batch`` has ``audio [B,32,128]``, ``image [B,3,32,32]``,
        ``label [B,C]`` (multi-hot), ``clip_id``; ``output`` has ``La = 8`` audio and ``Lv = 4``
        visual patches (75% masked), ``n_a = 2``/``n_v = 1`` visible tokens, ``[B,D]`` global
        tokens and ``[B,C]`` logits.
    """
    import torch

    from cavkit.interfaces import ModelOutput

    gen = generator or torch.Generator().manual_seed(0)
    b, la, lv = batch_size, 8, 4

    def rand(*shape: int, grad: bool = False) -> Any:
        return torch.randn(*shape, generator=gen).requires_grad_(grad)

    def mask(length: int) -> Any:
        noise = torch.rand(b, length, generator=gen)
        keep = int(length * 0.25)
        m = torch.ones(b, length)
        m.scatter_(1, noise.argsort(1)[:, :keep], 0.0)
        return m

    batch = {
        "audio": rand(b, 32, 128),
        "image": rand(b, 3, 32, 32),
        "label": (torch.rand(b, num_classes, generator=gen) > 0.5).float(),
        "clip_id": [f"clip{i}" for i in range(b)],
    }
    output = ModelOutput(
        pred_audio=rand(b, la, 256, grad=True),
        pred_visual=rand(b, lv, 768, grad=True),
        target_audio=rand(b, la, 256),
        target_visual=rand(b, lv, 768),
        mask_audio=mask(la),
        mask_visual=mask(lv),
        audio_tokens=rand(b, la // 4, dim, grad=True),
        visual_tokens=rand(b, lv // 4, dim, grad=True),
        audio_global=rand(b, dim, grad=True),
        visual_global=rand(b, dim, grad=True),
        logits=rand(b, num_classes, grad=True),
    )
    return batch, output

"""cavkit's Python API for using trained models.

Load any checkpoint (an official CAV-MAE / CAV-MAE Sync / fine-tuned ``.pth``, a cavkit
``.safetensors`` from ``cavkit convert`` or a training run, or a cavkit training checkpoint)
and get embeddings::

    from cavkit.api import load_model
    model = load_model("cav_mae_sync.pth")             # any fsspec URI; ready, in eval mode
    with torch.no_grad():
        emb = model.embed(fbank, image)                # fbank [B, 416, 128], image [B, 3, 224, 224]
    emb.audio_global, emb.visual_global                # Sync global tokens [B, 768]
    emb.audio_pooled, emb.visual_pooled                # mean of the patch latents [B, 768]
    emb.audio_patches, emb.visual_patches              # per-patch latents [B, 208, 768], [B, 196, 768]

Inputs are normalised fbanks (``(fbank + 5.081) / 4.4849``) and ImageNet-normalised images, as
the data pipeline produces them; either may be ``None`` to embed one modality only. A fine-tuned
classifier returns logits from ``model(fbank, image).logits``.
"""

from __future__ import annotations

from cavkit.checkpoints.convert import convert
from cavkit.checkpoints.load import init_from_checkpoint, load_model
from cavkit.checkpoints.read import read_checkpoint
from cavkit.interfaces import Embeddings, ModelOutput

__all__ = ["Embeddings", "ModelOutput", "convert", "init_from_checkpoint", "load_model", "read_checkpoint"]

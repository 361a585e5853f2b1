"""Classifier over a CAV-MAE or Sync encoder (upstream ``CAVMAEFT``, spec §3.1).

The head is ``head = Sequential(LayerNorm(D), Linear(D, C))`` (upstream ``mlp_head``); trainers find
its parameters by the ``head.`` prefix. Modes:

* ``multimodal``: both stacks, joint pass, ``norm``, mean over all patch tokens;
* ``audioonly`` / ``videoonly``: one stack, its per-modality pass, ``norm_a``/``norm_v``, mean;
* ``missingaudioonly`` / ``missingvideoonly`` (a multimodally fine-tuned model fed audio only / video
  only, the other modality missing): the mean of [joint pass over that modality alone, ``norm``,
  mean] and [per-modality pass, mean].

Global tokens, if the encoder has them, are run through the stacks but not pooled.
"""

from __future__ import annotations

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import Embeddings, ModelOutput
from cavkit.models.cav_mae import build_parts, unmasked_embeddings

MODES = ("multimodal", "audioonly", "videoonly", "missingaudioonly", "missingvideoonly")


class Classifier(nn.Module):
    def __init__(
        self,
        *,
        audio_tokenizer: nn.Module,
        visual_tokenizer: nn.Module,
        encoder: nn.Module,
        num_classes: int,
        mode: str = "multimodal",
    ):
        super().__init__()
        if mode not in MODES:
            raise UsageError(f"classifier mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.audio_tokenizer = audio_tokenizer
        self.visual_tokenizer = visual_tokenizer
        self.encoder = encoder
        dim = encoder.embed_dim
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        nn.init.ones_(self.head[0].weight)
        nn.init.zeros_(self.head[0].bias)
        nn.init.xavier_uniform_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)

    def features(self, audio: torch.Tensor | None, image: torch.Tensor | None, mode: str | None = None) -> torch.Tensor:
        """Pooled features ``[B, D]`` that feed the head in ``mode`` (default: this model's mode)."""
        mode = mode or self.mode
        enc = self.encoder
        needs_audio = mode in ("multimodal", "audioonly", "missingaudioonly")
        needs_image = mode in ("multimodal", "videoonly", "missingvideoonly")
        if needs_audio and audio is None or needs_image and image is None:
            raise UsageError(
                f"classifier mode {mode!r} needs {'audio' if needs_audio and audio is None else 'image'} input"
            )
        if mode == "multimodal":
            a = enc.strip_global(enc.stack_audio(self.audio_tokenizer(audio)))
            v = enc.strip_global(enc.stack_visual(self.visual_tokenizer(image)))
            return enc.joint(torch.cat([a, v], dim=1)).mean(dim=1)
        if mode in ("audioonly", "missingaudioonly"):
            x, tag = enc.stack_audio(self.audio_tokenizer(audio)), "a"
        else:
            x, tag = enc.stack_visual(self.visual_tokenizer(image)), "v"
        own = enc.strip_global(enc.modality_pass(x, tag)).mean(dim=1)
        if mode in ("audioonly", "videoonly"):
            return own
        unified = enc.joint(enc.strip_global(x)).mean(dim=1)
        return (unified + own) / 2

    def forward(
        self, audio: torch.Tensor | None, image: torch.Tensor | None, *, noise_audio=None, noise_visual=None
    ) -> ModelOutput:
        """Logits ``[B, C]``; either input may be ``None`` when the mode does not use it."""
        return ModelOutput(logits=self.head(self.features(audio, image)))

    def embed(self, audio: torch.Tensor | None, image: torch.Tensor | None) -> Embeddings:
        """Unmasked per-modality embeddings, as :meth:`cavkit.models.cav_mae.CAVMAE.embed`."""
        return unmasked_embeddings(self, audio, image)


def build_classifier(config) -> Classifier:
    """Factory for ``classifier``."""
    parts = build_parts(config, with_maskers=False)
    model = Classifier(num_classes=config.num_classes, mode=config.mode, **parts)
    if config.init:
        from cavkit.checkpoints.load import init_from_checkpoint

        init_from_checkpoint(model, config.init)
    return model

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
from cavkit.models.cav_mae import build_parts
from cavkit.models.classifier_base import FeatureClassifier, classification_head

MODES = ("multimodal", "audioonly", "videoonly", "missingaudioonly", "missingvideoonly")


class Classifier(FeatureClassifier):
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
        self.head = classification_head(encoder.embed_dim, num_classes)

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


def build_classifier(config) -> Classifier:
    """Factory for ``classifier``."""
    parts = build_parts(config, with_maskers=False)
    model = Classifier(num_classes=config.num_classes, mode=config.mode, **parts)
    return model

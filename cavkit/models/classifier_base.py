"""What the classifiers share: the upstream ``mlp_head`` and the forward around ``features``.

A classifier defines ``features(audio, image, mode=None) -> [B, W]`` and owns ``head``; this base
turns them into the model contract (``forward -> ModelOutput(logits)``, ``embed -> Embeddings``).
Used by the CAV-MAE classifier (spec §3.1), the audio-only classifier (§3.2) and the Sync clip
classifier (§5.5, reworked).
"""

from __future__ import annotations

import torch
from torch import nn

from cavkit.interfaces import Embeddings, ModelOutput


def classification_head(dim: int, num_classes: int) -> nn.Sequential:
    """``Sequential(LayerNorm(W), Linear(W, C))`` (upstream ``mlp_head``), initialised as upstream:
    unit LayerNorm, Xavier-uniform weight, zero bias. Trainers find it by the ``head.`` prefix."""
    head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
    nn.init.ones_(head[0].weight)
    nn.init.zeros_(head[0].bias)
    nn.init.xavier_uniform_(head[1].weight)
    nn.init.zeros_(head[1].bias)
    return head


class FeatureClassifier(nn.Module):
    """Base of the classifiers: logits = ``head(features(audio, image))``."""

    head: nn.Module

    def features(self, audio: torch.Tensor | None, image: torch.Tensor | None, mode: str | None = None):
        """The pooled features ``[B, W]`` the head reads (each classifier defines its own)."""
        raise NotImplementedError(f"{type(self).__name__} must define features(audio, image, mode)")

    def forward(
        self, audio: torch.Tensor | None, image: torch.Tensor | None = None, *, noise_audio=None, noise_visual=None
    ) -> ModelOutput:
        """Logits ``[B, C]``; nothing is masked (the noise arguments are accepted and unused)."""
        return ModelOutput(logits=self.head(self.features(audio, image)))

    def embed(self, audio: torch.Tensor | None, image: torch.Tensor | None) -> Embeddings:
        """Unmasked per-modality embeddings, as :meth:`cavkit.models.cav_mae.CAVMAE.embed`."""
        from cavkit.models.cav_mae import unmasked_embeddings

        return unmasked_embeddings(self, audio, image)

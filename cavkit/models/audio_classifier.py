"""Audio-only classifier in the layout of upstream ``CAVMAEFTAudio`` (spec §3.2).

Its 252 state-dict keys (ViT-B) are those of a CAV-MAE classifier without the visual side:
``modality_a``, ``pos_embed_a``, ``patch_embed_a.*``, ``blocks_a.*`` (11 x 20), ``blocks_u.0.*``
(20), ``norm_a``, ``norm`` (unused, kept for the layout) and ``mlp_head.*``. The forward is the
CAV-MAE classifier's ``audioonly`` mode: ``blocks_a``, the joint blocks with the audio norms,
``norm_a``, the mean over patch tokens, the head::

    audio [B,T,128] -> tokens [B,La,D] -> blocks_a -> blocks_u('a') -> norm_a -> mean [B,D] -> head [B,C]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import Embeddings
from cavkit.models.cav_mae import build_audio_tokenizer, unmasked_embeddings
from cavkit.models.classifier_base import FeatureClassifier, classification_head
from cavkit.models.encoder import CAVEncoder, encoder_params


class AudioOnlyEncoder(CAVEncoder):
    """The CAV-MAE encoder without ``blocks_v`` and ``norm_v`` (no global or register tokens)."""

    def __init__(self, **params: Any):
        """``params``: :class:`CAVEncoder`'s ``embed_dim``, ``depth``, ``joint_depth``, ``num_heads``,
        ``mlp_ratio`` and ``attn_impl`` (:class:`~cavkit.models.classifier_configs.AudioEncoderConfig`)."""
        super().__init__(**params)
        del self.blocks_v, self.norm_v

    def stack_visual(self, v: torch.Tensor) -> torch.Tensor:
        raise UsageError("this audio-only encoder has no visual stack; use a classifier or Sync model for images")

    def forward(self, audio: torch.Tensor | None, visual: torch.Tensor | None, *, joint: bool = True):
        """Audio only: ``visual`` must be ``None``; there is no joint (audio+visual) pass."""
        if visual is not None:
            self.stack_visual(visual)
        return super().forward(audio, None, joint=False)


class AudioClassifier(FeatureClassifier):
    """``forward(audio [B,T,128], image=None) -> ModelOutput(logits [B,C])`` (upstream ``forward_pred``)."""

    mode = "audioonly"

    def __init__(self, *, audio_tokenizer: nn.Module, encoder: AudioOnlyEncoder, num_classes: int):
        super().__init__()
        self.audio_tokenizer = audio_tokenizer
        self.encoder = encoder
        self.head = classification_head(encoder.embed_dim, num_classes)

    def features(self, audio: torch.Tensor | None, image: torch.Tensor | None = None, mode: str | None = None):
        """Pooled features ``[B,D]``; ``image`` is ignored (kept for the classifier call convention)."""
        if mode not in (None, "audioonly"):
            raise UsageError(f"the audio-only classifier has only mode 'audioonly', not {mode!r}")
        if audio is None:
            raise UsageError("the audio-only classifier needs audio input")
        x = self.encoder.stack_audio(self.audio_tokenizer(audio))
        return self.encoder.modality_pass(x, "a").mean(dim=1)

    def embed(self, audio: torch.Tensor | None, image: torch.Tensor | None = None) -> Embeddings:
        """Audio embeddings (upstream ``forward_feat``: patch latents after ``norm_a``); no visual side."""
        return unmasked_embeddings(self, audio, None)

    # ``init_from_checkpoint``: weights of a full (audio-visual) model's visual side are skipped
    init_skipped_prefixes = ("visual_tokenizer.", "encoder.blocks_v.", "encoder.norm_v.")


def build_audio_classifier(config) -> AudioClassifier:
    """Factory of the ``audio_classifier`` model."""
    encoder = AudioOnlyEncoder(embed_dim=config.embed_dim, **encoder_params(config.encoder))
    return AudioClassifier(
        audio_tokenizer=build_audio_tokenizer(config), encoder=encoder, num_classes=config.num_classes
    )

"""CAV-MAE Sync clip classifier (spec §5.5, reworked; the Sync paper's classification task).

A clip is K frames (16 in the published data), each paired with its own audio segment (spec §6.4).
Each frame goes through the shared tokenizers and encoder unmasked, exactly as in retrieval
(spec §5.4: modality stacks, then the per-modality passes of the joint layer and ``norm_a`` /
``norm_v``); one per-frame feature is taken, an :mod:`aggregator <cavkit.models.aggregators>`
turns the K frame features into a clip feature, and the head (LayerNorm + Linear, upstream
``mlp_head``) gives the logits::

    audio [B,K,L,128] --tokenizer, encoder--> [B*K, D] --+
                                                         +-- concat --> [B,K,W] --aggregator--> [B,W] --head--> [B,C]
    image [B,K,3,H,W] --tokenizer, encoder--> [B*K, D] --+

* ``modality``: ``audio`` (W = D), ``visual`` (W = D) or ``both`` (the two concatenated, W = 2D,
  as the dev code's multimodal features; unlike the dev sketch the features pass through the
  per-modality norms, and the joint pass, whose output the dev code discarded, is not run);
* ``frame_token``: the frame's global token (``cls_token_a``/``_v``, what Sync's contrastive loss
  trains) or the mean of its patch tokens.

An item without a frame axis (``audio [B,L,128]``, ``image [B,3,H,W]``) is a clip of one frame.
Trainers find the new parameters by the ``head.`` and ``aggregator.`` prefixes.
"""

from __future__ import annotations

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.models.cav_mae import build_parts
from cavkit.models.classifier_base import FeatureClassifier, classification_head
from cavkit.models.slots import build_slot

MODALITIES = ("audio", "visual", "both")


class SyncClassifier(FeatureClassifier):
    """Per-frame Sync features, a frame aggregator and a linear head; see the module docstring.

    ``forward(audio [B,K,L,128], image [B,K,3,H,W]) -> ModelOutput(logits [B,C])``; an input the
    modality does not use may be ``None``.
    """

    #: evaluation feeds every frame of a clip (dataset mode ``retrieval``), not one frame per item
    takes_all_frames = True
    #: ``init_from_checkpoint``: the aggregator starts fresh, like the head
    init_fresh_prefixes = ("aggregator.",)

    def __init__(
        self,
        *,
        audio_tokenizer: nn.Module,
        visual_tokenizer: nn.Module,
        encoder: nn.Module,
        aggregator: nn.Module,
        num_classes: int,
        modality: str = "both",
        frame_token: str = "global",
    ):
        super().__init__()
        if modality not in MODALITIES:
            raise UsageError(f"model.modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        if frame_token == "global" and not encoder.has_global_tokens:
            raise UsageError(
                "model.frame_token 'global' needs an encoder with global tokens (sync_encoder with "
                "global_tokens: true); use frame_token: pooled for an encoder without them"
            )
        self.mode = modality
        self.frame_token = frame_token
        self.audio_tokenizer = audio_tokenizer
        self.visual_tokenizer = visual_tokenizer
        self.encoder = encoder
        self.aggregator = aggregator
        self.head = classification_head(aggregator.out_dim, num_classes)

    @staticmethod
    def frame_feature_width(embed_dim: int, modality: str) -> int:
        """W: the width of one frame's feature (2D when both modalities are concatenated)."""
        return 2 * embed_dim if modality == "both" else embed_dim

    def _check_mode(self, mode: str | None) -> str:
        mode = mode or self.mode
        if mode != self.mode:
            raise UsageError(
                f"this Sync classifier was built for modality {self.mode!r} (its head reads those features); "
                f"it cannot be evaluated with mode {mode!r}: train one with model.modality: {mode}"
            )
        return mode

    def frame_features(self, audio: torch.Tensor | None, image: torch.Tensor | None) -> torch.Tensor:
        """Per-frame features ``[B,K,W]`` of ``audio [B,K,L,128]`` and/or ``image [B,K,3,H,W]``."""
        use_audio, use_visual = self.mode in ("audio", "both"), self.mode in ("visual", "both")
        if use_audio and audio is None or use_visual and image is None:
            missing = "audio" if use_audio and audio is None else "image"
            raise UsageError(f"the Sync classifier (modality {self.mode!r}) needs {missing} input")
        audio = audio.unsqueeze(1) if use_audio and audio.dim() == 3 else audio
        image = image.unsqueeze(1) if use_visual and image.dim() == 4 else image
        if use_audio and use_visual and audio.shape[:2] != image.shape[:2]:
            raise UsageError(
                f"audio and image disagree on clips x frames: {tuple(audio.shape[:2])} vs {tuple(image.shape[:2])}"
            )
        b, k = (audio if use_audio else image).shape[:2]
        ta = self.audio_tokenizer(audio.flatten(0, 1)) if use_audio else None
        tv = self.visual_tokenizer(image.flatten(0, 1)) if use_visual else None
        enc = self.encoder(ta, tv, joint=False)
        parts = []
        for patches, global_token in ((enc.audio, enc.audio_global), (enc.visual, enc.visual_global)):
            if patches is not None:
                parts.append(global_token if self.frame_token == "global" else patches.mean(dim=1))
        return torch.cat(parts, dim=-1).view(b, k, -1)

    def features(self, audio: torch.Tensor | None, image: torch.Tensor | None, mode: str | None = None) -> torch.Tensor:
        """The clip feature ``[B,W]`` that feeds the head (``mode``: this model's modality or ``None``)."""
        self._check_mode(mode)
        return self.aggregator(self.frame_features(audio, image))


def build_sync_classifier(config) -> SyncClassifier:
    """Factory of the ``sync_classifier`` model."""
    parts = build_parts(config, with_maskers=False)
    width = SyncClassifier.frame_feature_width(config.embed_dim, config.modality)
    aggregator = build_slot(config.aggregator, "aggregator", "attention", dim=width)
    model = SyncClassifier(
        num_classes=config.num_classes,
        modality=config.modality,
        frame_token=config.frame_token,
        aggregator=aggregator,
        **parts,
    )
    return model

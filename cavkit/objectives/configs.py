"""Parameters of the built-in objectives (attrs; no torch import)."""

from __future__ import annotations

from typing import Literal

import attrs

from cavkit.config import at_least, param

Direction = Literal["visual_to_audio", "audio_to_visual", "both"]
Negatives = Literal["local", "global"]


@attrs.frozen(kw_only=True)
class MAEConfig:
    """Masked reconstruction: per-patch MSE averaged over removed patches, audio + visual (spec §2.4)."""

    norm_pix_loss: bool = param(
        True, help="standardise each target patch (unbiased var, eps 1e-6); all released models use it"
    )


@attrs.frozen(kw_only=True)
class InfoNCEConfig:
    """InfoNCE on mean-pooled patch latents (spec §2.4); published: visual_to_audio, 0.05 fixed, local."""

    direction: Direction = param(
        "visual_to_audio",
        help="visual_to_audio: each visual picks its audio (published); both: mean of both directions",
    )
    temperature: float = param(0.05, help="softmax temperature (initial value if learnable)", validator=at_least(1e-6))
    learnable_temperature: bool = param(False, help="learn the temperature (as log 1/τ)")
    negatives: Negatives = param(
        "local", help="local: in-device batch (published DataParallel); global: all-gather across ranks with gradients"
    )


@attrs.frozen(kw_only=True)
class SyncContrastiveConfig(InfoNCEConfig):
    """CAV-MAE Sync contrastive loss on global tokens (spec §5.1.5); optional global+local average."""

    global_local: bool = param(False, help="average the global-token loss with the pooled-patch (local) loss")


@attrs.frozen(kw_only=True)
class ClassificationConfig:
    """Classification loss on ``output.logits`` against ``batch['label']`` (spec §7.1)."""

    loss: Literal["bce", "ce"] = param(
        "bce", help="bce: BCEWithLogits (AudioSet); ce: cross-entropy with soft targets (VGGSound)"
    )

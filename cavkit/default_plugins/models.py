"""Built-in model parts: tokenizers, maskers, encoders, decoders and models (CAV-MAE, CAV-MAE Sync, classifier).

Everything is registered by lazy ``"module:attr"`` reference: listing components imports no torch.
Objectives register from :mod:`cavkit.default_plugins.objectives`.
"""

from __future__ import annotations

from cavkit import hookimpl

_M = "cavkit.models"

#: (kind, name, factory, config, summary)
COMPONENTS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "tokenizer",
        "audio_patch",
        f"{_M}.tokenizers:build_audio_patch",
        f"{_M}.configs:AudioPatchConfig",
        "fbank [B,T,128] -> 16x16 patch tokens (frequency-major) + sin-cos positions + modality embedding",
    ),
    (
        "tokenizer",
        "image_patch",
        f"{_M}.tokenizers:build_image_patch",
        f"{_M}.configs:ImagePatchConfig",
        "image [B,3,H,W] -> 16x16 patch tokens + sin-cos positions + modality embedding",
    ),
    (
        "masker",
        "unstructured",
        f"{_M}.maskers:build_unstructured",
        f"{_M}.configs:MaskerConfig",
        "uniformly random masking (keeps the lowest-noise tokens)",
    ),
    (
        "masker",
        "time",
        f"{_M}.maskers:build_time",
        f"{_M}.configs:MaskerConfig",
        "removes whole time columns of the audio grid",
    ),
    (
        "masker",
        "freq",
        f"{_M}.maskers:build_freq",
        f"{_M}.configs:MaskerConfig",
        "removes whole frequency rows of the audio grid",
    ),
    (
        "masker",
        "time_freq",
        f"{_M}.maskers:build_time_freq",
        f"{_M}.configs:MaskerConfig",
        "removes time columns and frequency rows (upstream 'tf')",
    ),
    (
        "encoder",
        "cav_mae_encoder",
        f"{_M}.encoder:build_encoder",
        f"{_M}.configs:EncoderConfig",
        "modality-specific stacks + shared joint layer (three passes)",
    ),
    (
        "encoder",
        "sync_encoder",
        f"{_M}.encoder:build_encoder",
        f"{_M}.configs:SyncEncoderConfig",
        "the CAV-MAE encoder with Sync global tokens and 8 register tokens per modality",
    ),
    (
        "decoder",
        "mae_decoder",
        f"{_M}.decoder:build_decoder",
        f"{_M}.configs:DecoderConfig",
        "MAE decoder with per-modality prediction heads",
    ),
    (
        "model",
        "cav_mae",
        f"{_M}.cav_mae:build_cav_mae",
        f"{_M}.configs:CAVMAEConfig",
        "CAV-MAE pretraining model (Gong et al. 2023)",
    ),
    (
        "model",
        "cav_mae_sync",
        f"{_M}.cav_mae:build_cav_mae",
        f"{_M}.configs:CAVMAESyncConfig",
        "CAV-MAE Sync pretraining model (Araujo et al. 2025)",
    ),
    (
        "model",
        "classifier",
        f"{_M}.classifier:build_classifier",
        f"{_M}.configs:ClassifierConfig",
        "classifier over a CAV-MAE or Sync encoder (modes: multimodal, audio/video only, missing modality)",
    ),
)


@hookimpl
def cavkit_register_components(registry):
    """Register this area's built-in components (lazy references, no torch import)."""
    for kind, name, factory, config, summary in COMPONENTS:
        registry.add(kind, name, factory, config, summary=summary)

"""Built-in clip classifiers and their parts: the Sync classifier with its frame aggregators
(component kind ``aggregator``) and the audio-only classifier of the ``CAVMAEFTAudio`` layout.

Registered by lazy ``"module:attr"`` reference through the same hook a third-party plugin uses, so
a plugin adds an aggregator with ``registry.add("aggregator", name, factory, config)``.
"""

from __future__ import annotations

from cavkit import hookimpl

_M = "cavkit.models"
_C = f"{_M}.classifier_configs"

#: (kind, name, factory, config, summary)
COMPONENTS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "aggregator",
        "mean",
        f"{_M}.aggregators:build_mean",
        f"{_C}:MeanAggregatorConfig",
        "frame features [B,K,W] -> their mean over frames [B,W]",
    ),
    (
        "aggregator",
        "attention",
        f"{_M}.aggregators:build_attention",
        f"{_C}:AttentionAggregatorConfig",
        "learned query token + transformer blocks over the frames (Sync dev self_attention_cls)",
    ),
    (
        "model",
        "sync_classifier",
        f"{_M}.sync_classifier:build_sync_classifier",
        f"{_C}:SyncClassifierConfig",
        "Sync clip classifier: per-frame features of K frames, a frame aggregator, a linear head",
    ),
    (
        "model",
        "audio_classifier",
        f"{_M}.audio_classifier:build_audio_classifier",
        f"{_C}:AudioClassifierConfig",
        "audio-only classifier with the 252-key CAVMAEFTAudio checkpoint layout (spec §3.2)",
    ),
)


@hookimpl
def cavkit_register_components(registry):
    """Register the classifiers and aggregators (lazy references, no torch import)."""
    for kind, name, factory, config, summary in COMPONENTS:
        registry.add(kind, name, factory, config, summary=summary)

"""Built-in objectives: MAE reconstruction, InfoNCE, the Sync contrastive loss and classification.

Registered by lazy ``"module:attr"`` reference: listing components imports no torch.
"""

from __future__ import annotations

from cavkit import hookimpl

_O = "cavkit.objectives"

#: (kind, name, factory, config, summary)
COMPONENTS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "objective",
        "mae",
        f"{_O}.mae:build_mae",
        f"{_O}.configs:MAEConfig",
        "masked reconstruction loss (audio + visual)",
    ),
    (
        "objective",
        "infonce",
        f"{_O}.infonce:build_infonce",
        f"{_O}.configs:InfoNCEConfig",
        "InfoNCE on mean-pooled patch latents",
    ),
    (
        "objective",
        "sync_contrastive",
        f"{_O}.infonce:build_sync_contrastive",
        f"{_O}.configs:SyncContrastiveConfig",
        "InfoNCE on Sync global tokens (optionally averaged with the pooled-patch loss)",
    ),
    (
        "objective",
        "classification",
        f"{_O}.classification:build_classification",
        f"{_O}.configs:ClassificationConfig",
        "BCE or soft-target cross-entropy on logits",
    ),
)


@hookimpl
def cavkit_register_components(registry):
    """Register the built-in objectives (lazy references, no torch import)."""
    for kind, name, factory, config, summary in COMPONENTS:
        registry.add(kind, name, factory, config, summary=summary)

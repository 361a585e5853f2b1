"""The plugin module named by this distribution's ``cavkit`` entry point.

Registrations are lazy ``"module:attr"`` references: listing components imports no torch.
"""

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    registry.add(
        "objective",
        "siglip",
        "cavkit_siglip.objective:build_siglip",
        "cavkit_siglip.configs:SiglipConfig",
        summary="sigmoid pairwise contrastive loss (SigLIP) with learnable scale and bias; local or gathered negatives",
    )
    registry.add(
        "retrieval_strategy",
        "soft_alignment",
        "cavkit_siglip.strategy:build_soft_alignment",
        "cavkit_siglip.configs:SoftAlignmentConfig",
        summary="per-frame similarity under a soft temporal alignment tolerating shifts of up to `window` frames",
    )

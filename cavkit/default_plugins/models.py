"""Built-in model parts: tokenizers, maskers, encoders, decoders, objectives and models (CAV-MAE, CAV-MAE Sync, classifier)."""

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register this area's built-in components (lazy references, no torch import)."""

"""Built-in datasets (CAV-MAE, CAV-MAE Sync, shards, synthetic) and the data commands (prepare, data check)."""

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register this area's built-in components (lazy references, no torch import)."""

"""The training command (`cavkit train`)."""

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register this area's built-in components (lazy references, no torch import)."""

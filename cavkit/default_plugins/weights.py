"""Built-in weights: registers the published checkpoints (kind ``weights``, :mod:`cavkit.weights.zoo`)
and the ``cavkit weights`` command (:mod:`cavkit.weights.commands`)."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register every published checkpoint under its name (``weights:NAME``)."""
    from cavkit.weights.entry import register_weights
    from cavkit.weights.zoo import PUBLISHED

    for entry in PUBLISHED:
        register_weights(registry, entry)


@hookimpl
def cavkit_register_commands(cli):
    """Add ``cavkit weights``."""
    from cavkit.weights.commands import weights_group

    cli.add_command(weights_group)

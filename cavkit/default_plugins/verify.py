"""Built-in fidelity checks: registers ``cavkit verify`` (:mod:`cavkit.verify.commands`) and the
``trajectory_clips`` dataset the trajectory replay trains on."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register the replay's dataset (lazy references, no torch import)."""
    registry.add(
        "dataset",
        "trajectory_clips",
        "cavkit.verify.sources:build_trajectory_clips",
        "cavkit.verify.configs:TrajectoryClipsConfig",
        summary="the in-memory clips of a training-trajectory fixture (cavkit verify trajectory)",
    )


@hookimpl
def cavkit_register_commands(cli):
    """Add ``cavkit verify``."""
    from cavkit.verify.commands import verify_group

    cli.add_command(verify_group)

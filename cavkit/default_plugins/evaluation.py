"""Built-in retrieval strategies; registers the evaluation commands (:mod:`cavkit.evaluation.commands`)."""

from __future__ import annotations

from cavkit import hookimpl

_STRATEGIES = (
    ("pooled", "Pooled", "CAV-MAE protocol: average frames, L2-normalise, cosine (spec §8.1)"),
    ("diagonal_mean", "DiagonalMean", "mean cosine of time-aligned frame pairs (Sync README default, §8.2)"),
    ("diagonal_max", "DiagonalMax", "max cosine over time-aligned frame pairs (§8.2)"),
    ("mean", "Mean", "mean cosine over all frame pairs (§8.2)"),
    ("max", "Max", "max cosine over all frame pairs, chunked (§8.2)"),
)


@hookimpl
def cavkit_register_components(registry):
    """Register the retrieval strategies (lazy references, no torch import)."""
    for name, cls, summary in _STRATEGIES:
        registry.add(
            "retrieval_strategy",
            name,
            f"cavkit.evaluation.strategies:build_{name}",
            f"cavkit.evaluation.configs:{cls}Config",
            summary=summary,
        )


@hookimpl
def cavkit_register_commands(cli):
    from cavkit.evaluation.commands import eval_group
    from cavkit.evaluation.segmentation_command import segmentation_command

    eval_group.add_command(segmentation_command)
    cli.add_command(eval_group)

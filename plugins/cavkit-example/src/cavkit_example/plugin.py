"""The module named by this distribution's ``cavkit`` entry point.

It imports only cavkit (no torch): cavkit imports it at every start, including ``cavkit --help``.
The factory and the config are lazy ``"module:attr"`` references, imported on first use.
"""

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register the ``smooth_max`` retrieval strategy."""
    registry.add(
        "retrieval_strategy",
        "smooth_max",
        "cavkit_example.smooth_max:build_smooth_max",
        "cavkit_example.configs:SmoothMaxConfig",
        summary="log-sum-exp of frame-pair cosines: between mean (high temperature) and max (low)",
    )

"""Parameters of the example's components (attrs classes; no torch import, so that
``cavkit components show retrieval_strategy smooth_max`` stays fast)."""

from typing import Literal

import attrs

from cavkit.config import at_least, param


@attrs.frozen(kw_only=True)
class SmoothMaxConfig:
    """Parameters of :class:`cavkit_example.smooth_max.SmoothMax`."""

    temperature: float = param(
        0.05,
        help="softness tau: near 0 the score is the max over frame pairs, large values approach the mean",
        validator=at_least(1e-4),
    )
    pairs: Literal["all", "diagonal"] = param(
        "all", help="all: every (query frame, gallery frame) pair; diagonal: time-aligned pairs only"
    )
    chunk_size: int = param(256, help="queries scored at once (bounds memory: chunk x M x K x K)", validator=at_least(1))

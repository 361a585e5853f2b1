"""Parameters of the plugin's components (attrs classes; no torch import, so that
``cavkit components show`` stays fast)."""

from __future__ import annotations

import math
from typing import Literal

import attrs

from cavkit.config import at_least, param


@attrs.frozen(kw_only=True)
class SiglipConfig:
    """Sigmoid pairwise contrastive loss (SigLIP, Zhai et al. 2023, Algorithm 1)."""

    features: Literal["auto", "pooled", "global"] = param(
        "auto",
        help="pooled: mean of the visible patch tokens (CAV-MAE); global: the Sync global tokens; "
        "auto: global tokens when the model produces them, else pooled",
    )
    negatives: Literal["local", "global"] = param(
        "local",
        help="local: pairs within this process's batch; global: audio of this process against the "
        "visual embeddings gathered from every torch.distributed rank (with gradients)",
    )
    scale_init: float = param(
        10.0, help="initial logit scale t = exp(t'); the paper initialises t' = log 10", validator=at_least(1e-6)
    )
    bias_init: float = param(-10.0, help="initial logit bias b; the paper uses -10")
    learnable: bool = param(True, help="train t' and b with the model (false: keep them at their initial values)")

    @property
    def log_scale_init(self) -> float:
        return math.log(self.scale_init)


@attrs.frozen(kw_only=True)
class SoftAlignmentConfig:
    """Per-frame similarities aggregated along a soft temporal alignment."""

    window: int = param(
        1,
        help="largest frame shift tolerated: query frame k is matched against gallery frames k-window..k+window "
        "(0 gives diagonal_mean)",
        validator=at_least(0),
    )
    temperature: float = param(
        0.05,
        help="softness of the match within the window: 0 takes the best frame (max); > 0 weights the "
        "candidate frames by softmax(similarity / temperature); large values approach their mean",
        validator=at_least(0.0),
    )
    chunk_size: int = param(
        256, help="query clips scored at once (bounds memory: chunk x gallery x K x (2 window + 1) floats)",
        validator=at_least(1),
    )

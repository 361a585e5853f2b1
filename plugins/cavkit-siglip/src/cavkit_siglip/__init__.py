"""cavkit-siglip: a third-party cavkit plugin.

It registers two components through cavkit's public plugin API only:

* objective ``siglip``: the sigmoid pairwise contrastive loss (Zhai et al., "Sigmoid Loss for
  Language Image Pre-Training", ICCV 2023) for CAV-MAE (pooled patch tokens) or CAV-MAE Sync
  (global tokens), with local or gathered negatives;
* retrieval_strategy ``soft_alignment``: per-frame similarities aggregated along a soft temporal
  alignment that tolerates a shift of a few frames.

Importing this package imports no torch; the implementations live in :mod:`cavkit_siglip.objective`
and :mod:`cavkit_siglip.strategy`.
"""

__version__ = "0.1.0"

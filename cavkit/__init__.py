"""cavkit: contrastive audio-visual masked autoencoders (CAV-MAE, CAV-MAE Sync) as plugins.

Importing :mod:`cavkit` is cheap and never imports torch; the public plugin API is
:data:`hookimpl`, :mod:`cavkit.registry` and :mod:`cavkit.config`.
"""

import pluggy

__version__ = "0.1.0"

#: Decorate a plugin's hook implementations with this marker (see :mod:`cavkit.hookspecs`).
hookimpl = pluggy.HookimplMarker("cavkit")

__all__ = ["__version__", "hookimpl"]

"""Published checkpoints by name: ``weights:NAME`` and ``http(s)://...#sha256=...`` references.

* :mod:`cavkit.weights.entry`: :class:`WeightsEntry` and :func:`register_weights` (for plugins);
* :mod:`cavkit.weights.zoo`: the built-in entries (CAV-MAE model zoo, IN-initial, the Sync model);
* :mod:`cavkit.weights.cache`: the cache directory (``CAVKIT_CACHE``) and integrity records;
* :mod:`cavkit.weights.download`: resumable, hash-checked, atomic downloads;
* :mod:`cavkit.weights.resolve`: references -> verified local files (used by the checkpoint reader);
* :mod:`cavkit.weights.availability`: can a reference be read, and the fix if not (for the preflight);
* :mod:`cavkit.weights.commands`: ``cavkit weights list|get|verify``.

See docs/weights.md.
"""

from cavkit.weights.entry import WeightsEntry, is_weights_ref, register_weights

__all__ = ["WeightsEntry", "is_weights_ref", "register_weights"]

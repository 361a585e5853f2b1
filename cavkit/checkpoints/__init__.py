"""Checkpoints: official CAV-MAE / Sync ``.pth`` files, cavkit's format, and conversion between them.

* :func:`cavkit.checkpoints.load.load_model` reads any of them into a ready model;
* :mod:`cavkit.checkpoints.keys` maps upstream key names to cavkit's and back (no torch);
* :mod:`cavkit.checkpoints.infer` infers the model configuration from upstream keys (spec §4.6);
* :mod:`cavkit.checkpoints.convert` implements ``cavkit convert``.
"""

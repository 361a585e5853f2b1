"""Checkpoints: official CAV-MAE / Sync ``.pth`` files, cavkit's format, and conversion between them.

* :func:`cavkit.checkpoints.load.load_model` reads any of them into a ready model, through
  :mod:`~cavkit.checkpoints.read` (files to tensors), :mod:`~cavkit.checkpoints.stored` (the recipe and
  input declaration kept with them), :mod:`~cavkit.checkpoints.build` (the model node) and
  :mod:`~cavkit.checkpoints.state_dict` (strict loading, keys reported by name);
* :mod:`cavkit.checkpoints.keys` maps upstream key names to cavkit's and back (no torch);
* :mod:`cavkit.checkpoints.infer` infers the model configuration from upstream keys (spec §4.6);
* :mod:`cavkit.checkpoints.convert` implements ``cavkit convert``.
"""

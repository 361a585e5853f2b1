"""CAV-MAE and CAV-MAE Sync assembled from registered parts.

Importing this package does not import torch; the implementation modules (``tokenizers``,
``maskers``, ``encoder``, ``decoder``, ``cav_mae``, ``classifier``) do. Parameter classes live in
:mod:`cavkit.models.configs`.
"""

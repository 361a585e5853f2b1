"""The training engine: trainer loop, optimiser and schedules, data order, checkpoints, DDP helpers.

Modules: :mod:`~cavkit.engine.trainer` (the loop), :mod:`~cavkit.engine.optim`,
:mod:`~cavkit.engine.data`, :mod:`~cavkit.engine.checkpoint`, :mod:`~cavkit.engine.dist`,
:mod:`~cavkit.engine.run_dir`, :mod:`~cavkit.engine.evaluate`. All of them import torch.
"""

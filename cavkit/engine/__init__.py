"""The training engine: trainer loop, optimiser and schedules, data order, checkpoints, DDP helpers.

Modules, one job each: :mod:`~cavkit.engine.trainer` (the loop, orchestrating the rest),
:mod:`~cavkit.engine.train_step` (model + objectives as one module, autocast, DDP wrapping),
:mod:`~cavkit.engine.noise` (masking-noise plan), :mod:`~cavkit.engine.data` (data order, per-item
seeds, streaming), :mod:`~cavkit.engine.state` (checkpoint contents, resume),
:mod:`~cavkit.engine.checkpoint` (checkpoint files), :mod:`~cavkit.engine.validation`,
:mod:`~cavkit.engine.averaging`, :mod:`~cavkit.engine.scalars` (logging window),
:mod:`~cavkit.engine.recon_images`, :mod:`~cavkit.engine.evaluate`, :mod:`~cavkit.engine.optim`,
:mod:`~cavkit.engine.dist`, :mod:`~cavkit.engine.run_dir` (logging into the run directory). Keeping a
run safe: :mod:`~cavkit.engine.interrupt` (SIGTERM/Ctrl-C), :mod:`~cavkit.engine.ownership` (lock,
fresh-run check), :mod:`~cavkit.engine.resume_settings` (changed settings on resume),
:mod:`~cavkit.engine.finite` (non-finite losses and weights), :mod:`~cavkit.engine.io_errors`.
All of them import torch.
"""

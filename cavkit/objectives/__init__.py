"""Training objectives: ``objective(batch, output) -> ObjectiveOutput`` (nn.Modules; the trainer weights them).

Parameter classes live in :mod:`cavkit.objectives.configs` (no torch import).
"""

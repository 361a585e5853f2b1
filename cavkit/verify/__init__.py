"""Training fidelity: replay a recorded trajectory of the published training loops through cavkit's engine.

``cavkit verify trajectory FIXTURE.json`` (:mod:`cavkit.verify.commands`) turns a trajectory fixture
(format: ``../shared/fixtures/training/README.md``) into a cavkit recipe (:mod:`~cavkit.verify.recipe`),
trains it with :class:`cavkit.engine.trainer.Trainer` while the fixture's batch order and masking
noise are injected through the engine's public seams (:mod:`~cavkit.verify.replay`), and compares
every step with the published numbers (:mod:`~cavkit.verify.compare`).
"""

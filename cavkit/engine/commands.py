"""The training command: ``cavkit train RECIPE [--set k=v ...] [--resume latest|PATH]``.

On several GPUs or nodes the same command runs under torchrun, which sets the process group's
environment that :func:`cavkit.engine.dist.init_distributed` reads::

    torchrun --nproc-per-node 8 -m cavkit train recipes/sync_pretrain.yaml

torch is imported inside the command body only, so ``cavkit --help`` stays fast.
"""

from __future__ import annotations

import posixpath

import click

from cavkit.cli_options import set_option


def run_dir_for(template: str, recipe_uri: str) -> str:
    """Fill ``{recipe}`` in ``run.dir`` with the recipe's file stem."""
    stem = posixpath.basename(recipe_uri.rstrip("/")).rsplit(".", 1)[0]
    return template.replace("{recipe}", stem)


@click.command("train")
@click.argument("recipe")
@set_option(help="override a recipe value (repeatable), e.g. trainer.epochs=2")
@click.option(
    "--resume",
    default=None,
    metavar="latest|PATH",
    help="Continue from the run directory's latest checkpoint, or from a checkpoint file.",
)
@click.option(
    "--run-dir", default=None, metavar="URI", help="Run directory (any fsspec URI); default: the recipe's run.dir."
)
@click.option(
    "--device", default="auto", show_default=True,
    help="Where to train: auto (cuda when present), cpu, cuda, cuda:1, ... (under torchrun: each rank's own GPU)."
)
@click.option(
    "--overwrite", is_flag=True, help="Start afresh in a run directory that holds a run, deleting that run's files."
)
@click.option(
    "--allow-changed",
    is_flag=True,
    help="With --resume: accept changed settings that define the run (seed, model, optimiser, schedule, data...).",
)
def train_command(
    recipe: str,
    overrides: tuple[str, ...],
    resume: str | None,
    run_dir: str | None,
    device: str,
    overwrite: bool,
    allow_changed: bool,
) -> None:
    """Train the model of RECIPE (a YAML file or fsspec URI).

    Writes the resolved recipe, versions, TensorBoard logs, metrics and checkpoints to the run
    directory. Under torchrun each process trains one device; logging happens on rank 0.
    """
    import sys

    from cavkit.engine.dist import init_distributed, shutdown_distributed
    from cavkit.engine.trainer import Trainer
    from cavkit.errors import UsageError
    from cavkit.plugins import get_plugin_host
    from cavkit.recipe import load_recipe

    host = get_plugin_host()
    loaded = load_recipe(recipe, list(overrides), host=host)
    directory = run_dir or run_dir_for(loaded.run.dir, recipe)
    if overwrite and resume is not None:
        raise UsageError("--overwrite starts a run afresh and --resume continues one: pass only one of them")
    from cavkit.engine.preflight import check_run_inputs

    check_run_inputs(loaded, source=recipe, run_dir=directory, resume=resume, device=device, overwrite=overwrite, host=host)
    dist = init_distributed(None if device == "auto" else device)
    try:
        trainer = Trainer(loaded, run_dir=directory, dist=dist, versions=host.versions(), argv=sys.argv, host=host)
        if dist.is_rank_zero:
            click.echo(
                f"cavkit: training {recipe} on {dist.world_size} x {dist.device.type}: "
                f"{trainer.total_steps} steps of {trainer.global_batch} samples, run directory {directory}",
                err=True,
            )
        result = trainer.fit(resume=resume, overwrite=overwrite, allow_changed=allow_changed)
        if dist.is_rank_zero:
            click.echo(f"cavkit: done at step {result['step']}; weights: {result.get('final_weights')}", err=True)
    finally:
        shutdown_distributed()

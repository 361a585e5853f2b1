"""``cavkit verify``: checks that cavkit reproduces the published code.

``cavkit verify trajectory FIXTURE.json [--set KEY=VALUE ...]`` replays a recorded trajectory of the
published training loops through ``cavkit train``'s engine and exits 0 only when every step agrees
within the fixture's tolerance. torch is imported inside the command body only.
"""

from __future__ import annotations

import click

from cavkit.cli_options import set_option
from cavkit.errors import CavkitError


class TrajectoryDivergence(CavkitError):
    """cavkit's replay left the published trajectory (exit status 1)."""

    exit_code = 1


@click.group("verify")
def verify_group() -> None:
    """Check that cavkit reproduces the published code.

    \b
    trajectory FIXTURE.json   replay a recorded trajectory of the published training loop
                              (traintest_cavmae.py pretraining or traintest_ft.py fine-tuning)
                              through cavkit's trainer, optimiser, schedule and objectives; print
                              cavkit vs published per step (every loss term, c_acc, lr) and the
                              worst final-weight difference; exit 0 within the fixture's tolerance
                              (losses rtol 1e-5, c_acc exact, final weights atol 1e-4), else 1
                              naming the first step and quantity that diverged.

    \b
    Example: cavkit verify trajectory ../shared/fixtures/training/traj_pretrain.json
    """


@verify_group.command("trajectory")
@click.argument("fixture", type=click.Path(dir_okay=False))
@set_option(help="override a value of the replay recipe (repeatable), e.g. trainer.optimizer.name=adamw")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False),
              help="keep the replay's run directory (recipe, metrics, weights) here; default: a temporary one, removed")
@click.option("--show-recipe", is_flag=True, help="print the cavkit recipe the fixture becomes and exit")
def trajectory_command(fixture: str, overrides: tuple[str, ...], run_dir: str | None, show_recipe: bool) -> None:
    """Replay the published training run recorded in FIXTURE (json beside its .safetensors).

    The fixture's structured fields become a cavkit recipe (constructor -> model, args -> optimiser,
    schedule, loss weights, fine-tuning mode, head lr, label smoothing); the recorded batch order and
    masking noise go in through the trainer's data plan and noise plan. Exit status: 0 within
    tolerance, 1 on the first divergence, 2 for a fixture or override that cannot be replayed.
    """
    import math
    import tempfile

    import yaml

    from cavkit.plugins import get_plugin_host
    from cavkit.verify.compare import compare, format_table
    from cavkit.verify.fixture import Trajectory
    from cavkit.verify.recipe import recipe_data
    from cavkit.verify.replay import replay

    traj = Trajectory(fixture)
    if show_recipe:
        data = recipe_data(traj, init="<fixture init.module.* as an upstream checkpoint>", run_dir=run_dir or "<temporary>")
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
        return
    click.echo(f"cavkit verify: replaying {traj.name} ({traj.kind}, {len(traj.steps)} steps of {traj.batch_size} clips)", err=True)
    with tempfile.TemporaryDirectory(prefix="cavkit-verify-") as tmp:
        result = replay(traj, list(overrides), run_dir=run_dir or tmp, host=get_plugin_host())
        report = compare(traj, result)
    click.echo(format_table(report))
    if report.divergence is not None:
        raise TrajectoryDivergence(f"cavkit verify: {traj.name} DIVERGED: {report.divergence}")
    if math.isnan(report.final_max_abs):
        click.echo(f"cavkit verify: {traj.name} OK for the {len(report.rows)} steps replayed (final weights not compared)")
    else:
        click.echo(f"cavkit verify: {traj.name} OK: every step, every validation and the final weights are within tolerance")

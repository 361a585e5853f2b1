"""The recipe commands: ``cavkit recipe check`` and ``cavkit recipe show``. Imports no torch."""

from __future__ import annotations

import click

from cavkit.cli_options import set_option
from cavkit.plugins import get_plugin_host


@click.group("recipe")
def recipe_group() -> None:
    """Check and show recipes."""


@recipe_group.command("check")
@click.argument("recipes", nargs=-1, required=True)
@set_option()
@click.option("--inputs", type=click.Choice(["quick", "full"]), default=None,
              help="Also check what a training run needs (data files, clips, init checkpoints, precision vs "
                   "device, batch vs data, run directory): quick samples a few clips, full probes every clip.")
def recipe_check(recipes: tuple[str, ...], overrides: tuple[str, ...], inputs: str | None) -> None:
    """Validate one or more recipes; report every problem with its key path."""
    from cavkit.errors import UsageError
    from cavkit.recipe import load_recipe

    errors = []
    for uri in recipes:
        try:
            loaded = load_recipe(uri, overrides)
            if inputs is not None:
                from cavkit.engine.commands import run_dir_for
                from cavkit.engine.preflight import check_run_inputs

                check_run_inputs(
                    loaded, source=uri, run_dir=run_dir_for(loaded.run.dir, uri), inputs=inputs, host=get_plugin_host()
                )
            click.echo(f"{uri}: ok")
        except UsageError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise UsageError("\n".join(str(e) for e in errors))


@recipe_group.command("show")
@click.argument("recipe")
@set_option()
def recipe_show(recipe: str, overrides: tuple[str, ...]) -> None:
    """Print the resolved recipe: base merged, overrides applied, defaults filled in."""
    import yaml

    from cavkit.config import unstructure
    from cavkit.recipe import load_recipe

    host = get_plugin_host()
    resolved = load_recipe(recipe, overrides, host=host)
    versions = ", ".join(f"{dist} {version}" for dist, version in sorted(host.versions().items()))
    click.echo(f"# resolved from {recipe} with {versions}")
    click.echo(yaml.safe_dump(unstructure(resolved), sort_keys=False), nl=False)

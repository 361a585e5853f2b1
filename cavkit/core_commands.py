"""The core commands: ``cavkit plugins`` (what is installed and what failed) and ``cavkit components``.

They read the process's plugin host, which :func:`cavkit.cli.build_cli` builds before any command runs.
Imports no torch.
"""

from __future__ import annotations

import json

import click

from cavkit.plugins import get_plugin_host


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """List plugins: distribution, version, what each registered, and load failures."""
    host = get_plugin_host()
    registered: dict[str, list[str]] = {}
    for spec in host.registry.specs():
        registered.setdefault(spec.source, []).append(f"{spec.kind} {spec.qualified_id}")
    rows = [
        {
            "name": info.name,
            "dist": info.dist,
            "version": info.version,
            "builtin": info.builtin,
            "components": registered.get(info.name, []),
            "commands": host.commands.get(info.name, []),
        }
        for info in host.plugins
    ]
    failures = [
        {"name": f.name, "dist": f.dist, "version": f.version, "stage": f.stage, "error": f.error}
        for f in host.failures
    ]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": failures}, indent=2))
        return
    for row in rows:
        origin = "built-in" if row["builtin"] else "plugin"
        click.echo(f"{row['name']}  ({origin}; {row['dist']} {row['version']})")
        for item in row["components"]:
            click.echo(f"    {item}")
        if row["commands"]:
            click.echo(f"    commands: {', '.join(row['commands'])}")
        if not row["components"] and not row["commands"]:
            click.echo("    (registered nothing)")
    if not any(not r["builtin"] for r in rows):
        click.echo("No third-party plugins installed.")
    for f in failures:
        click.echo(f"FAILED {f['name']}  ({f['dist']} {f['version']}): could not {f['stage']}: {f['error']}")


@click.command("components")
@click.argument("args", nargs=-1)
def components_command(args: tuple[str, ...]) -> None:
    """List components: `components [KIND]`, or `components show KIND NAME` for parameters."""
    from cavkit.config import describe_params
    from cavkit.errors import UsageError
    from cavkit.registry import KINDS

    host = get_plugin_host()
    if args and args[0] == "show":
        if len(args) != 3:
            raise UsageError("usage: cavkit components show KIND NAME")
        kind, name = args[1], args[2]
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
        spec = host.registry.get(kind, name, failed_plugins=host.failed_names())
        try:
            rows = describe_params(spec.config_class())
        except Exception as exc:  # a plugin whose config class cannot be imported
            raise UsageError(f"{kind} {spec.qualified_id!r}: cannot read its parameters: {exc}") from exc
        click.echo(f"{spec.kind} {spec.qualified_id}  (from {spec.source})")
        if spec.summary:
            click.echo(f"  {spec.summary}")
        click.echo("parameters:" if rows else "parameters: (none)")
        for row in rows:
            rule = f"  [{row['constraint']}]" if row.get("constraint") else ""
            click.echo(f"  {row['name']}: {row['type']} = {row['default']}{rule}")
            if row["help"]:
                click.echo(f"      {row['help']}")
        return
    if len(args) > 1:
        raise UsageError("usage: cavkit components [KIND]  |  cavkit components show KIND NAME")
    kinds = KINDS
    if args:
        if args[0] not in KINDS:
            raise UsageError(f"unknown kind {args[0]!r}; kinds are: {', '.join(KINDS)}")
        kinds = (args[0],)
    width = max([36, *(len(spec.qualified_id) + 2 for spec in host.registry.specs())])
    for kind in kinds:
        specs = host.registry.specs(kind)
        click.echo(f"{kind}:")
        if not specs:
            click.echo("    (none)")
        counts: dict[str, int] = {}
        for spec in specs:
            counts[spec.name] = counts.get(spec.name, 0) + 1
        for spec in specs:
            summary = f"  {spec.summary}" if spec.summary else ""
            if counts[spec.name] > 1:
                summary = f"  [ambiguous bare name: use {spec.qualified_id}]{summary}"
            click.echo(f"    {spec.qualified_id:<{width}}{summary}")
    for f in host.failures:
        click.echo(f"(plugin {f.name!r} failed to load: {f.error})")

"""``integrator validate``: check config.yaml and every flow; report every problem at once."""

from __future__ import annotations

from pathlib import Path

import click

from integrator.cli.common import console
from integrator.cli.envfile import load_project_env
from integrator.connectors.redact import known_secrets
from integrator.errors import ConfigurationError
from integrator.logs import configure_logging
from integrator.pipeline.project import load_project
from integrator.pipeline.stage import SourceStage

__all__ = ["COMMANDS"]


@click.command("validate")
@click.pass_context
def validate_cmd(ctx: click.Context) -> int:
    """Check config.yaml and flows/*.yaml: keys, types, connectors, scripts, Jolt specs.

    Prints every error with its file, line and key, and warnings (such as unknown Jolt modify
    functions, which yield no value at run time). Exit status 2 when anything is wrong.
    """
    load_project_env(ctx)
    project = load_project(
        Path(ctx.obj["config"]), strict=False, state_url=ctx.obj["state"], collect=True
    )
    configure_logging(
        project.app.log_level, secrets=known_secrets(project.app), tracebacks=ctx.obj["debug"]
    )
    for w in project.warnings:
        console.print(f"warning: {w}", markup=False)
    for name, flow in sorted(project.flows.items()):
        kinds = []
        for stage in flow.stages:
            info = stage.describe()
            extra = f" ({info['runtime']} runtime)" if "runtime" in info else ""
            kinds.append(
                stage.name + extra + (" [source]" if isinstance(stage, SourceStage) else "")
            )
        console.print(f"ok: flow {name} ({flow.config.file}): {' → '.join(kinds)}", markup=False)
    if project.issues:
        raise ConfigurationError(project.issues)
    console.print(
        f"{len(project.flows)} flow(s) valid; {len(project.app.connectors)} connector(s)",
        markup=False,
    )
    return 0


COMMANDS = [validate_cmd]

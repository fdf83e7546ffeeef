"""``integrator alarms``: every alarm's state; ``integrator alarms check``: evaluate them once."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click
from rich.table import Table

from integrator.cli.common import console, load, load_quiet

if TYPE_CHECKING:
    from integrator.config.model import FlowConfig
    from integrator.pipeline.project import Project

__all__ = ["COMMANDS"]


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


@click.group("alarms", invoke_without_command=True)
@click.option("--flow", help="Only this flow.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: states and recent notices.")
@click.pass_context
def alarms_group(ctx: click.Context, flow: str | None, as_json: bool) -> None:
    """Every alarm of every flow with its state, as last evaluated (times in UTC)."""
    if ctx.invoked_subcommand is not None:
        return
    from integrator.alarms.store import AlarmStore
    from integrator.state.store import Store

    project = load_quiet(ctx)
    flows = _flows(project, flow)
    store = Store(project.app.state_url)
    try:
        alarms = AlarmStore(store)
        rows = {(r.flow, r.alarm): r for r in alarms.states(flow)}
        notices = alarms.notices(flow, 20)
    finally:
        store.close()
    listed: list[dict[str, str]] = []
    for f in flows:
        for spec in f.alarms:
            row = rows.get((f.name, spec.name))
            listed.append(
                {
                    "flow": f.name,
                    "alarm": spec.name,
                    "condition": spec.describe(),
                    "state": row.state if row else "unknown",
                    "since": _when(row.since) if row else "",
                    "detail": row.message if row else "not evaluated yet",
                    "evaluated_at": _when(row.evaluated_at) if row else "",
                    "notify": ", ".join(spec.notify),
                }
            )
    if as_json:
        click.echo(json.dumps({"alarms": listed, "notices": notices}, indent=2, default=str))
        return
    if not listed:
        console.print("no alarms: add `alarms:` to a flow file (see README, Alarms)")
        return
    table = Table(title="alarms")
    for col in ("flow", "alarm", "state", "since", "condition"):
        table.add_column(col, no_wrap=col != "condition", overflow="fold")
    table.add_column("detail", overflow="fold")
    for a in listed:
        table.add_row(a["flow"], a["alarm"], a["state"], a["since"], a["condition"], a["detail"])
    console.print(table)


@alarms_group.command("check")
@click.option("--flow", help="Only this flow's alarms.")
@click.pass_context
def check_cmd(ctx: click.Context, flow: str | None) -> int:
    """Evaluate every alarm once now, send the notices due, print the states."""
    from integrator.alarms.engine import evaluate
    from integrator.state.store import Store

    project = load(ctx)
    flows = _flows(project, flow)
    store = Store(project.app.state_url)
    try:
        done = evaluate(project.app, flows, store)
    finally:
        store.close()
    if not done.held:
        console.print(
            f"another process evaluates the alarms now (lease held by {done.holder}); "
            "nothing was evaluated or sent"
        )
        return 0
    for r in done.states:
        console.print(f"{r.flow}: {r.alarm} {r.state} ({r.message})")
    failed = 0
    for f, a, kind, notifier, ok, detail in done.notices:
        console.print(f"{f}: {a} {kind} → {notifier}: {'sent' if ok else 'FAILED: ' + detail}")
        failed += not ok
    if not done.states:
        console.print("no alarms: add `alarms:` to a flow file (see README, Alarms)")
    return 1 if failed else 0


COMMANDS = [alarms_group]


def _flows(project: Project, flow: str | None) -> list[FlowConfig]:
    """The flows a command is about: ``flow``, or every flow; a usage error for an unknown
    name."""
    flows = [f.config for f in project.flows.values() if flow in (None, f.config.name)]
    if flow is not None and not flows:
        raise click.UsageError(
            f"no flow named {flow!r}; known flows: {', '.join(sorted(project.flows)) or 'none'}"
        )
    return flows

"""``integrator runs`` and ``integrator orders show``: what happened, from the state store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from integrator.cli.common import console, load_lenient
from integrator.cli.envfile import load_project_env
from integrator.config import AppConfig, load_app
from integrator.connectors.redact import Redactor, known_secrets
from integrator.pipeline.project import policy_for
from integrator.state import Ledger, State, Store

__all__ = ["COMMANDS"]


def _when(value: Any) -> str:
    """A stored time as ISO 8601 with its zone (the store keeps UTC)."""
    if not isinstance(value, dt.datetime):
        return str(value or "")
    at = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return at.isoformat(timespec="seconds")


@click.command("runs")
@click.option("--flow", help="Only this flow.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_context
def runs_cmd(ctx: click.Context, flow: str | None, limit: int) -> int:
    """The latest runs, newest first, with their counts and status (times in UTC)."""
    load_project_env(ctx)
    app = load_app(Path(ctx.obj["config"]), need_secrets=False, state_url=ctx.obj["state"])
    shown = Redactor(known_secrets(app)).scrub  # a second net over what runs stored scrubbed
    store = Store(app.state_url)
    try:
        rows = store.runs.latest(flow, limit)
        known = store.runs.flows() if flow and not rows else []
    finally:
        store.close()
    if flow and not rows and flow not in known:
        defined = _defined_flows(app)
        if flow not in defined:
            names = ", ".join(sorted(set(defined) | set(known))) or "none"
            raise click.UsageError(
                f"no flow named {flow!r}; known flows: {names} (`integrator flows` lists the "
                "project's flows)"
            )
    table = Table(title="runs")
    for col in ("id", "flow", "started", "ended", "status", "ok", "failed", "skipped"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in rows:
        skipped = str(r["orders_skipped"])
        if r.get("skipped_json"):
            by = json.loads(r["skipped_json"])
            skipped += " (" + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) + ")"
        table.add_row(
            str(r["id"]),
            r["flow"],
            _when(r["started_at"]),
            _when(r["ended_at"]),
            r["status"],
            str(r["orders_ok"]),
            str(r["orders_failed"]),
            skipped,
            shown(r["error"] or ""),
        )
    console.print(table)
    if not rows:
        name = flow or "FLOW"
        console.print(f"no runs{f' of {flow}' if flow else ''} yet: integrator run-flow {name}")
    return 0


def _defined_flows(app: AppConfig) -> list[str]:
    """The names of the flows the project's flow files define (the readable ones)."""
    from integrator.config.load import load_flows

    return [f.name for f in load_flows(app, [], need_secrets=False)]


@click.group("orders")
def orders_group() -> None:
    """Look up orders in the state store."""


@orders_group.command("show")
@click.argument("number")
@click.option("--flow", help="Only this flow.")
@click.pass_context
def orders_show(ctx: click.Context, number: str, flow: str | None) -> int:
    """Journal, events, deliveries and log. attributes of order NUMBER, across runs; and why
    a run would skip it now."""
    project = load_lenient(ctx)
    # What the store shows was scrubbed by the run that wrote it (with what it learned: login
    # tokens, channel.conf); this second net masks the configuration's secrets and URL
    # credentials again, in case a value was stored unmasked.
    redactor = Redactor(known_secrets(project.app))
    shown = redactor.scrub
    store = Store(project.app.state_url)
    try:
        h = store.journal.history(number, flow)
        entries = {j["flow"]: store.journal.entry(j["flow"], number) for j in h["journal"]}
        notes: dict[str, str] = {}
        for name, entry in entries.items():
            built = project.flows.get(name)
            if entry is None or built is None:
                continue
            ledger = Ledger(store, name, policy_for(project.app, built), redactor)
            notes[name] = _status_note(ledger, entry, built.stages)
    finally:
        store.close()
    if not h["journal"]:
        console.print(f"order {number} is not in the state store: no run has read it yet")
        return 1
    for j in h["journal"]:
        console.print(
            f"[bold]{j['flow']}[/bold] order {number} (pk {j['order_pk']}): "
            f"[bold]{j['state']}[/bold], attempts {j['attempts']}"
            + (f", ERP ref {shown(j['erp_ref'])}" if j["erp_ref"] else "")
            + (f", written to {j['target_id']}" if j.get("target_id") else "")
            + (f"\n  last error: {shown(j['last_error'])}" if j["last_error"] else "")
            + (f"\n  now: {shown(notes[j['flow']])}" if notes.get(j["flow"]) else "")
        )
    ev = Table(title="events")
    for col in ("at", "run", "state", "fact"):
        ev.add_column(col, no_wrap=True)
    ev.add_column("message", overflow="fold")
    for e in h["events"]:
        ev.add_row(
            _when(e["at"]), str(e["run_id"] or ""), e["state"], e.get("fact") or "",
            shown(e["message"] or ""),
        )  # fmt: skip
    console.print(ev)
    if h["deliveries"]:
        dl = Table(title="deliveries")
        for col in ("at", "run", "kind", "connector", "connector id"):
            dl.add_column(col, no_wrap=True)
        dl.add_column("note", overflow="fold")
        for d in h["deliveries"]:
            dl.add_row(
                _when(d["at"]), str(d["run_id"] or ""), d["kind"], d["connector"],
                d["connector_id"] or "", shown(d["note"] or ""),
            )  # fmt: skip
        console.print(dl)
    if h["log"]:
        lg = Table(title="log. attributes")
        for col in ("at", "run", "key"):
            lg.add_column(col, no_wrap=True)
        lg.add_column("value", overflow="fold")
        for r in h["log"]:
            lg.add_row(_when(r["at"]), str(r["run_id"] or ""), r["key"], shown(r["value"] or ""))
        console.print(lg)
    return 0


def _status_note(ledger: Ledger, entry: Any, stages: list[Any]) -> str:
    """What the next run does with the order, in words."""
    skip = ledger.why_skipped(entry)
    if skip:
        return f"skipped by runs: {skip}"
    state = State(entry.state)
    if state in (State.SENT, State.MARKED):
        if not any(s.marks for s in stages):
            return (
                "the ERP has it; the flow's source cannot say whether it is marked, so the row "
                "stays until the source lists the order again"
            )
        return "the ERP has it: the next run that lists it marks it; otherwise the source is asked"
    if state is State.SENDING:
        return "the last write's outcome is unknown: the next run settles it"
    if state is State.FAILED:
        return "due: the next run tries it again"
    return ""


COMMANDS = [runs_cmd, orders_group]

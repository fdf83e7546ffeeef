"""``integrator runs`` and ``integrator orders show``: what happened, from the state store."""

from __future__ import annotations

import click
from rich.table import Table

from integrator.cli.common import console, state_store

__all__ = ["COMMANDS"]


@click.command("runs")
@click.option("--flow", help="Only this flow.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_context
def runs_cmd(ctx: click.Context, flow: str | None, limit: int) -> int:
    """The latest runs, newest first, with their counts and status."""
    store = state_store(ctx)
    try:
        rows = store.list_runs(flow, limit)
    finally:
        store.close()
    table = Table(title="runs")
    for col in ("id", "flow", "started", "ended", "status", "ok", "failed", "skipped"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["flow"],
            str(r["started_at"])[:19],
            str(r["ended_at"] or "")[:19],
            r["status"],
            str(r["orders_ok"]),
            str(r["orders_failed"]),
            str(r["orders_skipped"]),
            r["error"] or "",
        )
    console.print(table)
    if not rows:
        console.print("no runs yet: integrator run-flow FLOW")
    return 0


@click.group("orders")
def orders_group() -> None:
    """Look up orders in the state store."""


@orders_group.command("show")
@click.argument("number")
@click.option("--flow", help="Only this flow.")
@click.pass_context
def orders_show(ctx: click.Context, number: str, flow: str | None) -> int:
    """Journal, events and log. attributes of order NUMBER, across runs."""
    store = state_store(ctx)
    try:
        h = store.order_history(number, flow)
    finally:
        store.close()
    if not h["journal"]:
        console.print(f"order {number} is not in the state store: no run has read it yet")
        return 1
    for j in h["journal"]:
        console.print(
            f"[bold]{j['flow']}[/bold] order {number} (pk {j['order_pk']}): "
            f"[bold]{j['state']}[/bold], attempts {j['attempts']}"
            + (f", ERP ref {j['erp_ref']}" if j["erp_ref"] else "")
            + (f"\n  last error: {j['last_error']}" if j["last_error"] else "")
        )
    ev = Table(title="events")
    for col in ("at", "run", "state"):
        ev.add_column(col, no_wrap=True)
    ev.add_column("message", overflow="fold")
    for e in h["events"]:
        ev.add_row(str(e["at"])[:19], str(e["run_id"] or ""), e["state"], e["message"] or "")
    console.print(ev)
    if h["log"]:
        lg = Table(title="log. attributes")
        for col in ("at", "run", "key"):
            lg.add_column(col, no_wrap=True)
        lg.add_column("value", overflow="fold")
        for r in h["log"]:
            lg.add_row(str(r["at"])[:19], str(r["run_id"] or ""), r["key"], r["value"] or "")
        console.print(lg)
    return 0


COMMANDS = [runs_cmd, orders_group]

"""``integrator reconcile FLOW``: orders the OMS and the ERP disagree about."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
from rich.table import Table

from integrator.cli.common import console, load
from integrator.pipeline import Project, run_flow
from integrator.reconcile import Reconciliation, reconcile

__all__ = ["COMMANDS"]


def _since(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; write 2026-11-01 or 2026-11-01T08:00:00Z",
            param_hint="--since",
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@click.command("reconcile")
@click.argument("flow")
@click.option(
    "--since",
    help="Only orders placed since this date (UTC unless it says otherwise), on both sides: "
    "an order placed before it and created in the ERP after it is left out.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--sync", is_flag=True, help="Stock flows: run the flow now for the entries that differ."
)
@click.pass_context
def reconcile_cmd(
    ctx: click.Context, flow: str, since: str | None, as_json: bool, sync: bool
) -> int:
    """Compare the orders the OMS shows as sent with the orders the ERP holds.

    Lists orders marked sent in the OMS but missing in the ERP, orders in the ERP the OMS does
    not show as sent (or does not know), and orders whose amounts differ. For a stock flow
    (a ``stock_snapshot`` source, Akinon's Full Stock idea): every entry whose quantity the OMS
    does not have; ``--sync`` then runs the stock flow, which writes exactly those. Exit status
    0 when they agree, 1 when something differs or the ERP could not be asked about an order,
    2 for a configuration error. The flow's ``reconcile:`` block says where the ERP lists its
    orders (``erp_list``) and which fields hold the number and the amount; an ERP that cannot
    list them is asked for each sent order through the flow's own query_check
    (``erp_query: query_check``, the default without ``erp_list``), at most
    ``requests_per_second`` a second. With a ``schedule`` in it, the daemon runs the check and
    exports the counts as ``integrator_reconcile_differences``.
    """
    when = _since(since)
    project = load(ctx)
    result = reconcile(project, flow, when)
    if as_json:
        click.echo(json.dumps(_as_json(result), indent=2))
        return _synced(ctx, project, result) if sync else (1 if result.differences else 0)
    console.print(
        f"{result.flow}: {result.oms_sent} order(s) sent in the OMS, {result.erp_orders} in the "
        f"ERP" + (f", placed since {result.since} UTC" if result.since else "")
    )
    if not result.erp_listed:
        console.print(
            f"The ERP was asked order by order through the flow's query_check, at most "
            f"{result.requests_per_second:g} a second"
            + (
                f" ({result.assembled} order(s) assembled: its templates read more than the "
                "OMS's listing row has)"
                if result.assembled
                else ""
            )
            + ". Orders the ERP holds that the OMS does not show as sent, or does not know, "
            "cannot be found this way: not checked (reconcile.erp_list lists the ERP's orders)."
        )
    if result.outside_window:
        console.print(
            f"{result.outside_window} order(s) placed before {result.since} UTC and created in "
            "the ERP after it: outside the window, not compared"
        )
    table = Table(title="differences")
    for col in ("order", "what", "OMS", "ERP"):
        table.add_column(col)
    for n in result.missing_in_erp:
        table.add_row(n, "sent in the OMS, missing in the ERP", "sent", "—")
    for n in result.not_marked_in_oms:
        table.add_row(n, "in the ERP, not marked sent in the OMS", "not sent", "present")
    for n in result.unknown_to_oms:
        table.add_row(n, "in the ERP, unknown to the OMS", "—", "present")
    for n, a, b in result.amount_mismatches:
        table.add_row(n, "amounts differ", a, b)
    for k, e, o in result.stock_differences:
        table.add_row(k, "stock differs", o, e)
    for n, why in result.could_not_ask:
        table.add_row(n, "could not ask the ERP (not counted as missing)", "sent", why)
    if result.differences:
        console.print(table)
        return _synced(ctx, project, result) if sync else 1
    console.print("no differences")
    return 0


def _as_json(result: Reconciliation) -> dict[str, Any]:
    """The result for ``--json``: kinds the way of asking cannot know are null, not []."""
    listed = result.erp_listed
    return {
        "flow": result.flow,
        "since": result.since,
        "erp_query": result.erp_query,
        "oms_sent": result.oms_sent,
        "erp_orders": result.erp_orders,
        "outside_window": result.outside_window,
        "missing_in_erp": result.missing_in_erp,
        "not_marked_in_oms": result.not_marked_in_oms if listed else None,
        "unknown_to_oms": result.unknown_to_oms if listed else None,
        "amount_mismatches": [
            {"order": n, "oms": a, "erp": b} for n, a, b in result.amount_mismatches
        ],
        "stock_differences": [
            {"key": k, "erp": e, "oms": o} for k, e, o in result.stock_differences
        ],
        "could_not_ask": [{"order": n, "reason": why} for n, why in result.could_not_ask],
        **(
            {}
            if listed
            else {
                "not_known": "orders in the ERP that the OMS does not show as sent: the ERP "
                "was asked order by order (query_check), not listed",
                "requests_per_second": result.requests_per_second,
                "assembled": result.assembled,
            }
        ),
    }


def _synced(ctx: click.Context, project: Project, result: Reconciliation) -> int:
    """``--sync``: run the stock flow; 0 when it wrote every difference."""
    if not result.stock_differences:
        return 1 if result.differences else 0
    from integrator.cli.common import print_summary

    outcome, run = run_flow(project, result.flow)
    print_summary(outcome, run)
    return 0 if outcome.status == "ok" else 1


COMMANDS = [reconcile_cmd]

"""``integrator quarantine``, ``replay`` and ``resolve``: settle the orders that need a person.

Every action is recorded as an event on the order (see ``integrator orders show``).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from integrator.cli.common import console, load, print_summary, state_store
from integrator.cli.workbench import read_json
from integrator.pipeline import run_flow
from integrator.state import Store

__all__ = ["COMMANDS"]


def _flow_of(store: Store, number: str, flow: str | None) -> str:
    flows = store.flows_of(number)
    if flow:
        if flow not in flows:
            raise click.UsageError(f"order {number} is not in the journal of flow {flow!r}")
        return flow
    if not flows:
        raise click.UsageError(f"order {number} is not in the journal of any flow")
    if len(flows) > 1:
        raise click.UsageError(f"order {number} is in several flows ({', '.join(flows)}): --flow")
    return flows[0]


@click.command("quarantine")
@click.option("--flow", help="Only this flow.")
@click.pass_context
def quarantine_cmd(ctx: click.Context, flow: str | None) -> int:
    """List quarantined orders with their last error, and the orders stuck in `sending`."""
    store = state_store(ctx)
    try:
        rows = store.in_state("quarantined", flow)
        sending = store.in_state("sending", flow)
    finally:
        store.close()
    table = Table(title="quarantined orders")
    for col in ("flow", "order", "since", "attempts", "kind"):
        table.add_column(col, no_wrap=True)
    table.add_column("last error", overflow="fold")
    for r in rows:
        table.add_row(
            r["flow"],
            r["order_number"],
            str(r["updated_at"])[:19],
            str(r["attempts"]),
            r["error_kind"] or "",
            r["last_error"] or "",
        )
    console.print(table)
    for r in sending:
        console.print(
            f"in `sending` (the last write's outcome is unknown): {r['flow']} "
            f"{r['order_number']}; the next run settles it by query_check",
            markup=False,
        )
    console.print(
        "replay one: integrator replay NUMBER; settle an ambiguous one: "
        "integrator resolve NUMBER --as-sent | --resend",
        style="dim",
    )
    return 0


@click.command("replay")
@click.argument("number")
@click.option("--flow", help="The flow (needed when several know the order).")
@click.option("--force", is_flag=True, help="Also when the last write's outcome is unknown.")
@click.pass_context
def replay_cmd(ctx: click.Context, number: str, flow: str | None, force: bool) -> int:
    """Run order NUMBER through its flow now, quarantine and backoff notwithstanding.

    An order quarantined because its last write may have reached the ERP is refused without
    --force: check the ERP first, or use `integrator resolve`.
    """
    store = state_store(ctx)
    try:
        name = _flow_of(store, number, flow)
        entry = store.entry(name, number)
        assert entry is not None
        ambiguous = entry.state in ("quarantined", "sending")
        if ambiguous and entry.error_kind == "ambiguous" and not force:
            raise click.UsageError(
                f"order {number} may already be in the ERP (its last write's outcome is "
                "unknown); check the ERP, then `integrator resolve NUMBER --as-sent` or "
                "`--resend` (or replay --force)"
            )
        if force and ambiguous:
            store.record(name, number, None, "failed", "replay --force: the write is repeated")
    finally:
        store.close()
    project = load(ctx)
    result, run = run_flow(project, name, only_order=number, replay=True)
    print_summary(result, run)
    if result.ok + result.failed == 0:
        console.print(
            f"order {number} was not listed by the source (already marked sent, or filtered)",
            markup=False,
        )
        return 1
    return 0 if result.status == "ok" else 1


@click.command("resolve")
@click.argument("number")
@click.option("--as-sent", "as_sent", is_flag=True, help="The ERP has it: do not write again.")
@click.option("--resend", is_flag=True, help="The ERP does not have it: write it again.")
@click.option(
    "--response",
    "response_file",
    type=click.Path(path_type=Path),
    help="With --as-sent: the ERP's answer (JSON) for check_response and mark_sent.",
)
@click.option("--flow", help="The flow (needed when several know the order).")
@click.pass_context
def resolve_cmd(
    ctx: click.Context,
    number: str,
    as_sent: bool,
    resend: bool,
    response_file: Path | None,
    flow: str | None,
) -> int:
    """Settle an order whose last write's outcome is unknown, by hand.

    \b
    --as-sent   you found it in the ERP: the next run resumes after the write (check_response
                and mark_sent; give --response with the ERP's answer so they get its ids)
    --resend    you checked it is not in the ERP: the next run writes it again
    """
    if as_sent == resend:
        raise click.UsageError("give exactly one of --as-sent and --resend")
    if response_file and not as_sent:
        raise click.UsageError("--response goes with --as-sent")
    response = read_json(response_file, "--response") if response_file else {}
    store = state_store(ctx)
    try:
        name = _flow_of(store, number, flow)
        entry = store.entry(name, number)
        assert entry is not None
        if entry.state in ("sent", "marked", "done"):
            raise click.UsageError(f"order {number} is already {entry.state}: nothing to resolve")
        if as_sent:
            store.record(
                name,
                number,
                None,
                "sent",
                "resolved by hand: the ERP has it",
                response=response,
                last_error=None,
                error_kind=None,
            )
        else:
            store.record(
                name,
                number,
                None,
                "failed",
                "resolved by hand: not in the ERP, write it again",
                attempts=0,
                next_try=None,
                error_kind=None,
            )
    finally:
        store.close()
    console.print(
        f"order {number} of {name}: "
        + ("sent; the next run marks it" if as_sent else "will be written on the next run"),
        markup=False,
    )
    return 0


COMMANDS = [quarantine_cmd, replay_cmd, resolve_cmd]

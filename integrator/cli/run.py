"""``integrator run-flow``: run one flow once, now."""

from __future__ import annotations

import os
import sys

import click

from integrator.cli.common import (
    console,
    interruptible,
    load,
    order_progress,
    print_plan,
    print_summary,
)
from integrator.connectors.redact import scrub_urls
from integrator.pipeline import RunResult, run_flow

__all__ = ["COMMANDS"]


@click.command("run-flow")
@click.argument("flow")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read and query-check, run scripts and mappings, then print every request it "
    "would send to the ERP and to Omnitron (values only the ERP's answer gives are "
    "placeholders) and why it would skip an order; writes nothing, not even a state file or "
    "a lock.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Process at most N orders.")
@click.option("--order", "order", metavar="NUMBER", help="Process only this order number.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds the orders in flight get to finish after Ctrl-C or SIGTERM.",
)
@click.pass_context
def run_flow_cmd(
    ctx: click.Context,
    flow: str,
    dry_run: bool,
    limit: int | None,
    order: str | None,
    no_progress: bool,
    grace: float,
) -> int:
    """Run FLOW (its name, or the path of its file) once.

    Ctrl-C or SIGTERM: no new order is taken, the ones in flight finish (up to --grace
    seconds), the summary is printed and the run is recorded as interrupted; a second one
    stops at once. --limit counts the orders processed, not the ones skipped.

    Exit status: 0 when every order went through, 1 when some failed or the run stopped,
    2 on a configuration error, 130 after Ctrl-C (128 + the signal).
    """
    project = load(ctx)
    show = not no_progress and not dry_run
    with interruptible(grace) as intr, order_progress(show, limit) as advance:
        result, run = run_flow(
            project,
            flow,
            dry_run=dry_run,
            limit=limit,
            only_order=order,
            on_order=advance,
            metrics=advance.metrics,  # the bar's total: the count the source gives
            stop=intr.event,
            grace=grace,
            events=True,  # orders the daemon's events queued are this run's too
        )
    if dry_run:
        print_plan(run)
        _print_skips(result)
        why = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped_by.items()))
        console.print(
            f"dry run: {result.ok} order(s) would be sent, {result.failed} failed "
            f"before the write, {result.skipped} skipped{f' ({why})' if why else ''}; "
            "nothing was written",
            style="dim",
            markup=False,
        )
        if run.store is None:
            console.print(
                f"no state store yet ({scrub_urls(project.app.state_url)}): every order listed "
                "counts as "
                "new; the first run creates it",
                style="dim",
                markup=False,
            )
        if result.failures or result.error:
            print_summary(result, run)
    else:
        print_summary(result, run)
    code = intr.exit_code if intr.exit_code is not None else (0 if result.status == "ok" else 1)
    if result.abandoned:  # threads still finish calls after the grace period: do not wait
        console.print(
            f"{result.abandoned} order(s) were still in flight after {grace:g} s; they keep the "
            "state they reached and resume on the next run",
            markup=False,
        )
        sys.stdout.flush()
        os._exit(code)
    return code


def _print_skips(result: RunResult) -> None:
    """A dry run: the orders a run would leave alone now, and why (the ledger's reasons)."""
    if not result.skips:
        return
    from rich.table import Table
    from rich.text import Text

    from integrator.pipeline.runner import skip_category

    table = Table(title="orders a run would skip now", show_header=True)
    table.add_column("order", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("why", overflow="fold")
    for o in sorted(result.skips, key=lambda o: o.number):
        table.add_row(Text(o.number), Text(o.state), Text(o.reason))
    console.print(table)
    kinds = {skip_category(o.reason) for o in result.skips}
    if "quarantined" in kinds:
        console.print(
            "quarantined orders wait for a person: integrator orders show NUMBER, then "
            "integrator replay NUMBER (or integrator resolve NUMBER)",
            style="dim",
            markup=False,
        )
    if kinds & {"backing off", "settling"}:
        console.print(
            "orders backing off or settling are taken by the first run after that time",
            style="dim",
            markup=False,
        )


COMMANDS = [run_flow_cmd]

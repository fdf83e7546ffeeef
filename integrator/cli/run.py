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
from integrator.pipeline import run_flow

__all__ = ["COMMANDS"]


@click.command("run-flow")
@click.argument("flow")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read and query-check, run scripts and mappings, then print the requests it "
    "would send to the ERP and to Omnitron; writes nothing, records nothing.",
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
        console.print(
            f"dry run: {result.ok} order(s) would be sent, {result.failed} failed "
            f"before the write, {result.skipped} skipped; nothing was written",
            style="dim",
        )
        if result.failures:
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


COMMANDS = [run_flow_cmd]

"""``integrator quarantine [release]``, ``replay`` and ``resolve``: the orders that need a person.

Every action goes through the ledger (the same table, the same redaction as a run) and is an
event on the order naming who did it (see ``integrator orders show``).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.table import Table

from integrator.cli.common import (
    console,
    interruptible,
    load,
    load_lenient,
    print_summary,
    state_store,
)
from integrator.cli.workbench import read_json
from integrator.connectors.redact import scrub_urls
from integrator.pipeline import recovery, run_flow
from integrator.pipeline.recovery import ActionRefused
from integrator.state import State, Store

__all__ = ["COMMANDS"]


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


@contextmanager
def _refusals() -> Iterator[None]:
    """The shared actions' refusals as usage errors (exit code 2, the same words)."""
    try:
        yield
    except ActionRefused as exc:
        raise click.UsageError(str(exc)) from None


@click.group("quarantine", invoke_without_command=True)
@click.option("--flow", help="Only this flow.")
@click.pass_context
def quarantine_cmd(ctx: click.Context, flow: str | None) -> int:
    """List quarantined orders with their last error, and the orders stuck in `sending`.

    \b
    integrator quarantine release --flow F [--reason TEXT]   let them through again
    """
    if ctx.invoked_subcommand is not None:
        return 0
    store = state_store(ctx)
    try:
        rows = store.journal.in_state(State.QUARANTINED, flow)
        sending = store.journal.in_state(State.SENDING, flow)
    finally:
        store.close()
    table = Table(title="quarantined orders")
    for col in ("flow", "order", "since", "attempts", "kind"):
        table.add_column(col, no_wrap=True)
    table.add_column("last error", overflow="fold")
    for r in rows:
        table.add_row(
            r.flow,
            r.order_number,
            r.updated_at.isoformat(timespec="seconds") if r.updated_at else "",
            str(r.attempts),
            r.error_kind or "",
            scrub_urls(r.last_error or ""),  # stored scrubbed; a second net for URLs
        )
    console.print(table)
    for r in sending:
        console.print(
            f"in `sending` (the last write's outcome is unknown): {r.flow} "
            f"{r.order_number}; the next run settles it by query_check",
            markup=False,
        )
    console.print(
        "replay one: integrator replay NUMBER; settle an ambiguous one: integrator resolve "
        "NUMBER --as-sent | --resend; release many: integrator quarantine release --flow F",
        style="dim",
    )
    return 0


@quarantine_cmd.command("release")
@click.option("--flow", required=True, help="The flow whose quarantined orders to release.")
@click.option(
    "--reason", "reason", help="Only orders whose quarantine reason (last error) contains TEXT."
)
@click.option("--note", help="Why you release them (kept on each order's event).")
@click.option("--by", help="Who releases them (default: your user name).")
@click.pass_context
def release_cmd(
    ctx: click.Context, flow: str, reason: str | None, note: str | None, by: str | None
) -> int:
    """Release the quarantined orders of a flow: the next run takes them again.

    Orders held after their write resume after it (never written twice); orders held
    because the ERP's copy could not be verified are left for `integrator resolve`.
    """
    project = load_lenient(ctx)
    store = Store(project.app.state_url)
    try:
        with _refusals():
            done = recovery.release(project, store, flow, reason, note, _who(by))
    finally:
        store.close()
    released, kept = len(done.released), done.kept
    console.print(f"{released} order(s) of {flow} released; the next run takes them", markup=False)
    if kept:
        console.print(
            "left quarantined (whether the ERP has them cannot be told by this flow: check the "
            f"ERP, then integrator resolve NUMBER --as-sent or --resend): {', '.join(kept)}",
            markup=False,
        )
    return 0


@click.command("replay")
@click.argument("number")
@click.option("--flow", help="The flow (needed when several know the order).")
@click.option("--force", is_flag=True, help="Also when the last write's outcome is unknown.")
@click.option("--by", help="Who replays it (default: your user name).")
@click.pass_context
def replay_cmd(
    ctx: click.Context, number: str, flow: str | None, force: bool, by: str | None
) -> int:
    """Run order NUMBER through its flow now, quarantine and backoff notwithstanding.

    An order whose last write may have reached the ERP is refused without --force: check
    the ERP first, or use `integrator resolve`. One held after its write resumes after it.
    """
    project = load(ctx)
    store = Store(project.app.state_url)
    who = _who(by)
    try:
        with _refusals():
            name = recovery.prepare_replay(
                project, store, number, flow, force, who, "replay --force"
            )
    finally:
        store.close()
    with interruptible(30.0) as intr:
        result, run = run_flow(
            project, name, only_order=number, replay=True, replay_by=who, stop=intr.event,
            grace=30.0,
        )  # fmt: skip
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
@click.option(
    "--erp-ref", help="With --as-sent: the ERP's id of the order (instead of --response)."
)
@click.option("--flow", help="The flow (needed when several know the order).")
@click.option("--by", help="Who resolves it (default: your user name).")
@click.pass_context
def resolve_cmd(
    ctx: click.Context,
    number: str,
    as_sent: bool,
    resend: bool,
    response_file: Path | None,
    erp_ref: str | None,
    flow: str | None,
    by: str | None,
) -> int:
    """Settle an order whose last write's outcome is unknown, by hand.

    \b
    --as-sent   you found it in the ERP: the next run resumes after the write (check_response
                and mark_sent). It needs what they read: --response FILE with the ERP's
                answer, or --erp-ref ID (the answer is then {"id": ID}).
    --resend    you checked it is not in the ERP: the next run writes it again
    """
    if as_sent == resend:
        raise click.UsageError("give exactly one of --as-sent and --resend")
    if (response_file or erp_ref) and not as_sent:
        raise click.UsageError("--response and --erp-ref go with --as-sent")
    if as_sent and not (response_file or erp_ref):
        raise click.UsageError(
            "--as-sent needs what check_response and mark_sent will read: --response FILE "
            "(the ERP's answer, JSON) or --erp-ref ID (the ERP's id of the order)"
        )
    response = read_json(response_file, "--response") if response_file else {"id": erp_ref}
    project = load_lenient(ctx)
    store = Store(project.app.state_url)
    who = _who(by)
    try:
        with _refusals():
            name = recovery.resolve(
                project,
                store,
                number,
                flow,
                as_sent=as_sent,
                response=response,
                erp_ref=erp_ref,
                who=who,
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

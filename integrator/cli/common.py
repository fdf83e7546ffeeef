"""Helpers shared by the commands: loading the project, printing a run's summary."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from integrator.cli.envfile import load_project_env
from integrator.config.load import load_app
from integrator.connectors.redact import known_secrets
from integrator.logs import configure_logging
from integrator.pipeline.project import load_project

if TYPE_CHECKING:  # a run's modules load when a command needs them (a fast --help, validate)
    from integrator.pipeline.context import RunContext
    from integrator.pipeline.project import Project
    from integrator.pipeline.runner import Outcome, RunResult
    from integrator.state.store import Store

__all__ = [
    "Interrupt",
    "console",
    "interruptible",
    "load",
    "load_lenient",
    "load_quiet",
    "order_progress",
    "print_plan",
    "print_summary",
    "state_store",
]

# Piped output (scripts, CI logs) gets wide tables instead of 80 folded columns.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def state_store(ctx: click.Context) -> Store:
    """The state store of the project, without needing the connectors' secrets."""
    from integrator.state.store import Store

    load_project_env(ctx)
    app = load_app(Path(ctx.obj["config"]), need_secrets=False, state_url=ctx.obj["state"])
    return Store(app.state_url)


def load(ctx: click.Context, *, strict: bool = True) -> Project:
    """Load the project named by ``--config`` and configure logging."""
    load_project_env(ctx)
    project = load_project(Path(ctx.obj["config"]), strict=strict, state_url=ctx.obj["state"])
    configure_logging(
        project.app.log_level, secrets=known_secrets(project.app), tracebacks=ctx.obj["debug"]
    )
    return project


def load_lenient(ctx: click.Context) -> Project:
    """The project without its secrets, and with only the flows that load (one broken flow
    file must not keep a person from looking at, or settling, the orders of the others)."""
    load_project_env(ctx)
    project = load_project(
        Path(ctx.obj["config"]), strict=False, need_secrets=False, state_url=ctx.obj["state"]
    )
    configure_logging(
        project.app.log_level, secrets=known_secrets(project.app), tracebacks=ctx.obj["debug"]
    )
    return project


def load_quiet(ctx: click.Context) -> Project:
    """The project without its secrets (for commands that call no connector); logging on."""
    load_project_env(ctx)
    project = load_project(Path(ctx.obj["config"]), need_secrets=False, state_url=ctx.obj["state"])
    configure_logging(
        project.app.log_level, secrets=known_secrets(project.app), tracebacks=ctx.obj["debug"]
    )
    return project


@contextmanager
def order_progress(enabled: bool) -> Iterator[Callable[[Outcome], None]]:
    """A progress bar on stderr (when it is a terminal) advanced once per order."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    err = Console(stderr=True)
    if not enabled or not err.is_terminal:
        yield lambda _o: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("orders", total=None, failed=0)
        failed = 0

        def advance(o: Outcome) -> None:
            nonlocal failed
            failed += o.status == "failed"
            progress.update(task, advance=1, failed=failed)

        yield advance


class Interrupt:
    """The stop a signal asks for: ``event`` is set by the first SIGINT/SIGTERM."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number (130 for Ctrl-C), or None without a signal."""
        return None if self.signum is None else 128 + self.signum


@contextmanager
def interruptible(grace: float) -> Iterator[Interrupt]:
    """SIGINT and SIGTERM stop the run in order: the first takes no new order and lets the
    ones in flight finish (up to ``grace`` seconds); a second stops at once (the orders in
    flight keep the state they reached). Script workers never get the signal."""
    intr = Interrupt()
    err = Console(stderr=True, highlight=False)

    def handler(signum: int, _frame: FrameType | None) -> None:
        if intr.event.is_set():
            err.print("stopping now: the orders in flight keep the state they reached")
            raise KeyboardInterrupt
        intr.signum = signum
        intr.event.set()
        err.print(
            f"{signal.Signals(signum).name}: stopping; the orders in flight finish (up to "
            f"{grace:g} s). Again to stop at once."
        )

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield intr
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def print_summary(result: RunResult, run: RunContext) -> None:
    """The summary table printed at the end of a run."""
    from rich.table import Table

    table = Table(title=f"{result.flow} — run {result.run_id or '(dry run)'}", show_header=True)
    for col in ("orders ok", "failed", "skipped", "seconds", "status"):
        table.add_column(col, justify="right")
    table.add_row(
        str(result.ok),
        str(result.failed),
        str(result.skipped),
        f"{result.seconds:.2f}",
        result.status.value,
    )
    console.print(table)
    if result.skipped:
        why = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped_by.items()))
        console.print(f"skipped: {why}", markup=False)
    if result.failures:
        fail = Table(title="failed orders", show_header=True)
        fail.add_column("order")
        fail.add_column("state")
        fail.add_column("error", overflow="fold")
        for o in sorted(result.failures, key=lambda o: o.number)[:50]:
            fail.add_row(o.number, o.state, o.message)
        console.print(fail)
        if len(result.failures) > 50:
            console.print(
                f"... and {len(result.failures) - 50} more: integrator runs / "
                "integrator orders show NUMBER"
            )
    if result.interrupted:
        console.print(
            "[yellow]run interrupted:[/yellow] no new order was taken; the orders in flight "
            "keep the state they reached and resume on the next run"
        )
    if result.internal_errors:
        console.print(
            f"[red]{result.internal_errors} internal error(s):[/red] a bug, not the orders' "
            "fault; they are tried again next run (run with --debug, and please report it)"
        )
    if result.error:
        console.print(f"[red]run stopped:[/red] {result.error}")
    if run.log_path:
        console.print(f"run log: {run.log_path}")


def print_plan(run: RunContext) -> None:
    """Dry run output: every request the run would have sent, as JSON lines."""
    for p in sorted(run.planned, key=lambda p: (p.order, p.connector != "erp")):
        record: dict[str, Any] = {
            "order": p.order,
            "connector": p.connector,
            "method": p.method,
            "url": p.url,
            "body": p.body,
        }
        click.echo(json.dumps(record, ensure_ascii=False))

"""Helpers shared by the commands: loading the project, printing a run's summary."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
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
    from rich.progress import Progress

    from integrator.metrics import Metrics
    from integrator.pipeline.context import RunContext
    from integrator.pipeline.project import Project
    from integrator.pipeline.runner import Outcome, RunResult
    from integrator.state.store import Store

__all__ = [
    "Interrupt",
    "OrderProgress",
    "alarm_interval_option",
    "console",
    "interruptible",
    "load",
    "load_lenient",
    "load_quiet",
    "order_progress",
    "print_plan",
    "print_summary",
    "state_store",
    "trusted_proxies",
    "trusted_proxy_option",
]


def alarm_interval_option(fn: Any) -> Any:
    """``--alarm-interval``: the daemon's and the standalone console's, one meaning."""
    from integrator.alarms.config import ALARM_INTERVAL

    return click.option(
        "--alarm-interval",
        type=click.FloatRange(min=1, max=86400),
        default=ALARM_INTERVAL,
        show_default=True,
        metavar="SECONDS",
        help="How often the alarms are evaluated (by the daemon also after each run of their "
        "flow). Daemons and consoles sharing a state store take turns: one evaluates at a "
        "time (a lease in the store), so nobody is told twice.",
    )(fn)


def _proxy_addresses(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """Every ``--trusted-proxy`` value (repeated, or comma-separated), checked."""
    from integrator.scheduler.web import proxy_address

    addresses: list[str] = []
    for value in values:
        for part in value.split(","):
            try:
                address = proxy_address(part)
            except ValueError as exc:
                raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
            if address not in addresses:
                addresses.append(address)
    return tuple(addresses)


def host_port(http: str) -> tuple[str, int]:
    """``--http HOST:PORT`` of the daemon and the standalone console, split; a usage error
    (exit 2) when it is not that (a port of ASCII digits, 0 to 65535)."""
    host, _, port = http.rpartition(":")
    if not host.strip("[]") or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {http!r}", param_hint="--http")
    return host, int(port)


def trusted_proxy_option(fn: Any) -> Any:
    """``--trusted-proxy``: the daemon's and the standalone console's, one meaning."""
    return click.option(
        "--trusted-proxy",
        "trusted_proxy",
        multiple=True,
        callback=_proxy_addresses,
        metavar="ADDR",
        help="With --behind-proxy: the IP address the reverse proxy connects from "
        "(repeatable, or comma-separated: 10.0.0.5,10.0.0.6); X-Forwarded-For and "
        "X-Forwarded-Proto count only on its connections, any other client is seen as "
        "itself (its address, plain http). Default: 127.0.0.1 and ::1, a proxy on the "
        "same host.",
    )(fn)


def trusted_proxies(behind_proxy: bool, given: tuple[str, ...]) -> tuple[str, ...]:
    """The proxies whose X-Forwarded-* headers count: ``given``, else loopback's;
    ``--trusted-proxy`` without ``--behind-proxy`` is a usage error (exit 2)."""
    from integrator.scheduler.web import LOOPBACK_PROXIES

    if given and not behind_proxy:
        raise click.BadParameter(
            "goes with --behind-proxy (without it, no X-Forwarded-* header counts)",
            param_hint="--trusted-proxy",
        )
    return given or LOOPBACK_PROXIES


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


class OrderProgress:
    """What a run reports to the progress bar: called once per order (``advance``), and its
    ``metrics`` take the number of orders the source says it will list (the bar's total)."""

    def __init__(self, progress: Progress | None = None, limit: int | None = None) -> None:
        from integrator.metrics import Metrics

        self.progress, self.limit = progress, limit
        self.task = progress.add_task("orders", total=None, failed=0) if progress else None
        self.failed = self.done = 0
        self.total: int | None = None
        self._lock = threading.Lock()
        bar = self

        class _Listed(Metrics):
            def listed(self, flow: str, count: int) -> None:
                bar.expect(count)

        self.metrics: Metrics = _Listed()

    def expect(self, count: int) -> None:
        """The source will list ``count`` orders (at most --limit of them are taken)."""
        with self._lock:
            total = count if self.limit is None else min(count, self.limit)
            self.total = max(total, self.done)
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, total=self.total)
                self.progress.refresh()

    def __call__(self, o: Outcome) -> None:
        with self._lock:
            self.done += 1
            self.failed += o.status == "failed"
            if self.progress is None or self.task is None:
                return
            if self.total is not None and self.done > self.total:  # events queued more
                self.total = self.done
                self.progress.update(self.task, total=self.total)
            self.progress.update(self.task, advance=1, failed=self.failed)


class _Stderr:
    """While the bar shows, whatever is written to file descriptor 2 (the log, warnings, what
    scripts print, a library's own writes) goes into a pipe, and each line is printed above
    the bar by its console: nothing lands on the bar's line."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.saved = -1
        self.read = -1
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Stderr:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.thread = threading.Thread(target=self._pump, daemon=True, name="stderr-above-bar")
        self.thread.start()
        return self

    def _pump(self) -> None:
        from rich.text import Text

        pending = b""
        while True:
            try:
                chunk = os.read(self.read, 65536)
            except OSError:
                chunk = b""
            if not chunk:  # every writer closed it
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                text = Text.from_ansi(line.decode("utf-8", "replace").rstrip("\r"))
                self.console.print(text, soft_wrap=True)
        if pending:
            self.console.print(Text.from_ansi(pending.decode("utf-8", "replace")), soft_wrap=True)

    def __exit__(self, *_exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's last writer here: the pump reads to its end
        os.close(self.saved)
        if self.thread is not None:
            self.thread.join(2.0)  # a process that outlived the run may still hold the pipe
            if not self.thread.is_alive():
                os.close(self.read)


@contextmanager
def order_progress(enabled: bool, limit: int | None = None) -> Iterator[OrderProgress]:
    """A progress bar on stderr (when it is a terminal) advanced once per order; its total is
    the count the source gives (``OrderProgress.metrics``). While it shows, lines written to
    stderr are printed above it."""
    if not enabled or not sys.stderr.isatty():
        yield OrderProgress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    # The bar writes to the terminal through a descriptor of its own; fd 2 becomes the pipe.
    tty = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace", closefd=True)
    err = Console(file=tty, highlight=False)
    redirect = _Stderr(err)
    try:
        with (
            redirect,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
                redirect_stdout=sys.stdout.isatty(),
            ) as progress,
        ):
            yield OrderProgress(progress, limit)
    finally:
        if redirect.thread is None or not redirect.thread.is_alive():
            tty.close()


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


def _skip_hint(reason: str) -> str:
    """What a skip reason (``runner.skip_category``) means for the person reading the summary."""
    from integrator.pipeline.runner import LISTED_TWICE

    hints = {
        "quarantined": "they need a person: integrator quarantine (then replay, or resolve)",
        "backing off": "they failed lately and are tried again once their backoff ends "
        "(integrator orders show NUMBER)",
        "settling": "a write to the ERP may still be in flight; a later run settles it",
        LISTED_TWICE: "the source listed them twice; each was processed once",
    }
    return hints.get(reason, "integrator orders show NUMBER tells why")


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
    for reason, n in sorted(result.skipped_by.items()):
        some = result.skipped_examples.get(reason, [])
        shown = ", ".join(some) + (", ..." if n > len(some) else "")
        hint = _skip_hint(reason)
        console.print(f"skipped: {reason}: {n} ({shown}): {hint}", markup=False)
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

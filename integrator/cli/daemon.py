"""``integrator daemon`` and ``integrator flows``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click
from rich.table import Table

from integrator.cli.common import console, load_quiet
from integrator.connectors.redact import known_secrets
from integrator.logs import configure_logging

__all__ = ["COMMANDS"]


@click.command("daemon")
@click.option(
    "--http",
    "http",
    default="127.0.0.1:9108",
    show_default=True,
    metavar="HOST:PORT",
    help="Where /healthz and /metrics listen (port 0: any free port).",
)
@click.option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds in-flight orders get to finish after SIGTERM.",
)
@click.option(
    "--watch",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between checks of config.yaml and flows/ for changes.",
)
@click.option("--console-logs", is_flag=True, help="Human-readable logs instead of JSON lines.")
@click.pass_context
def daemon_cmd(
    ctx: click.Context, http: str, grace: float, watch: float, console_logs: bool
) -> int:
    """Run every flow in flows/ on its schedule until SIGTERM.

    \b
    Schedules (in each flow's `schedule:`): cron with a timezone, every (30s, 5m, 1h, 7d),
    triggered_by another flow. A flow is never run twice at once, in this process or in
    another one sharing the state store. SIGTERM or SIGINT: in-flight orders finish (up to
    --grace seconds), then exit 0. SIGHUP or a changed file: reload; an invalid change keeps
    the old flow running. Logs are JSON lines on stderr.

    \b
    GET /healthz   scheduler alive and state store reachable (200, else 503)
    GET /metrics   Prometheus: orders, stage latency, ERP status codes, runs, quarantine
    """
    from integrator.config import load_app
    from integrator.scheduler.daemon import Daemon

    host, _, port = http.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {http!r}", param_hint="--http")
    app = load_app(Path(ctx.obj["config"]), state_url=ctx.obj["state"])
    configure_logging(app.log_level, json=not console_logs, secrets=known_secrets(app))
    daemon = Daemon(
        Path(ctx.obj["config"]),
        host=host,
        port=int(port),
        grace_seconds=grace,
        watch_seconds=watch,
        state_url=ctx.obj["state"],
    )
    daemon.install_signals()
    daemon.start()
    code = daemon.loop()
    if code:  # the grace period ran out: threads still finish calls, do not wait for them
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


@click.command("flows")
@click.pass_context
def flows_cmd(ctx: click.Context) -> int:
    """List every flow with its schedule and its next three fire times."""
    project = load_quiet(ctx)
    table = Table("flow", "schedule", "next fire times", "file")
    now = dt.datetime.now(dt.UTC)
    for name, built in sorted(project.flows.items()):
        s = built.config.schedule
        times = ", ".join(t.strftime("%Y-%m-%d %H:%M %Z") for t in s.next_times(3, now)) or "-"
        table.add_row(name, s.describe(), times, built.config.file)
    console.print(table)
    for issue in project.issues:
        console.print(f"invalid: {issue}", markup=False)
    return 2 if project.issues else 0


COMMANDS = [daemon_cmd, flows_cmd]

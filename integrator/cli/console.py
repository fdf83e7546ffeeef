"""``integrator console``: the operator console, standalone, over the project's state store."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from integrator.cli.common import load_lenient

__all__ = ["COMMANDS"]


@click.command("console")
@click.option(
    "--http",
    "http",
    default="127.0.0.1:9109",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the console listens (port 0: any free port). Loopback only: the console has "
    "no login yet.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1, max=1000),
    default=20,
    show_default=True,
    metavar="N",
    help="The dashboard's error rate and average run time are over each flow's last N runs.",
)
@click.pass_context
def console_cmd(ctx: click.Context, http: str, window: int) -> int:
    """Serve the operator console (read-only) over the project's state store.

    \b
    Dashboard, runs and each run's log, order timelines, failures, the workbench (a script,
    a mapping or a whole flow on one order, in trace mode: nothing is called), and the JSON
    API under /api/ (described at /api/openapi.json). It shows what the store holds; running
    a flow and the live view need the daemon (`integrator daemon` serves the console too).
    Loopback only, and it answers only to a loopback Host header, until login exists.
    Ctrl-C or SIGTERM stops it.
    """
    from integrator.console.guard import loopback_refusal

    host, _, port = http.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {http!r}", param_hint="--http")
    refusal = loopback_refusal(host)
    if refusal is not None:
        raise click.BadParameter(refusal, param_hint="--http")
    project = load_lenient(ctx)

    from integrator.connectors.redact import Redactor, known_secrets
    from integrator.console.app import ConsoleSource, create_app
    from integrator.errors import UserError
    from integrator.pipeline.project import load_project
    from integrator.scheduler.httpserver import WebServer
    from integrator.scheduler.web import HttpLimits
    from integrator.state.store import Store

    store = Store(project.app.state_url)
    redactor = Redactor(known_secrets(project.app))
    schedules = {name: built.config.schedule for name, built in project.flows.items()}
    source = ConsoleSource(
        store=lambda: store,
        redactor=lambda: redactor,
        log_dir=lambda: project.app.log_dir,
        schedules=lambda: schedules,
        where="standalone",
        window=window,
        project=lambda: load_project(
            Path(ctx.obj["config"]), strict=False, need_secrets=False, state_url=ctx.obj["state"]
        ),
    )
    limits = HttpLimits()
    server = WebServer(create_app(source), host, int(port), limits)
    try:
        server.start()
    except (OSError, ValueError) as exc:
        store.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(
            f"cannot listen on {host}:{port} for the console: {why}; choose another address "
            "with --http HOST:PORT"
        ) from None
    shown = f"[{server.host}]" if ":" in server.host else server.host
    click.echo(f"console on http://{shown}:{server.port}/ (Ctrl-C stops it)", err=False)
    sys.stdout.flush()
    for issue in project.issues:
        click.echo(f"invalid (not shown): {issue}", err=True)
    stop = threading.Event()

    def ask_stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    try:
        stop.wait()
    finally:
        server.stop()
        store.close()
    return 0


COMMANDS = [console_cmd]

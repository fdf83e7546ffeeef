"""``integrator console``: the operator console, standalone, over the project's state store."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from integrator.cli.common import (
    alarm_interval_option,
    host_port,
    load_lenient,
    trusted_proxies,
    trusted_proxy_option,
)

if TYPE_CHECKING:
    from integrator.alarms.evaluator import Evaluator
    from integrator.console.users import ConsoleConfig
    from integrator.pipeline.project import Project
    from integrator.state.store import Store

__all__ = ["COMMANDS"]


@click.group("console", invoke_without_command=True)
@click.option(
    "--http",
    "http",
    default="127.0.0.1:9109",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the console listens (port 0: any free port). Beyond loopback only with users "
    "(config.yaml's console:), --behind-proxy and --public-host.",
)
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="A reverse proxy terminates TLS in front: trust its X-Forwarded-For and "
    "X-Forwarded-Proto (one hop) on connections from --trusted-proxy, and allow a "
    "non-loopback --http.",
)
@trusted_proxy_option
@click.option(
    "--public-host",
    metavar="NAME",
    help="With --behind-proxy: the host name the proxy passes on in the Host header "
    "(console.example.com); any other name is refused (DNS rebinding).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1, max=1000),
    default=20,
    show_default=True,
    metavar="N",
    help="The dashboard's error rate and average run time are over each flow's last N runs.",
)
@alarm_interval_option
@click.pass_context
def console_cmd(
    ctx: click.Context,
    http: str,
    behind_proxy: bool,
    trusted_proxy: tuple[str, ...],
    public_host: str | None,
    window: int,
    alarm_interval: float,
) -> int:
    """Serve the operator console over the project's state store.

    \b
    Dashboard, runs and each run's log, order timelines, failures, the workbench (a script,
    a mapping or a whole flow on one order, in trace mode: nothing is called), and the JSON
    API under /api/ (described at /api/openapi.json). Without users it is read-only but for
    the workbench, on loopback only. With users (config.yaml's console:), they log in;
    operators release, replay and resolve orders. Running a flow now and the live view of a
    run need the daemon (`integrator daemon` serves the console too): while one runs over the
    same state store (its heartbeat there), this console links to its console. It evaluates
    the alarms too (--alarm-interval), taking turns with daemons and other consoles over the
    same state store (a lease), so nobody is told twice. Ctrl-C or SIGTERM stops it.

    \b
    integrator console hash-password    make a user's password_hash
    """
    if ctx.invoked_subcommand is not None:
        return 0
    host, port = host_port(http)
    if public_host and not behind_proxy:
        raise click.BadParameter("goes with --behind-proxy", param_hint="--public-host")
    proxies = trusted_proxies(behind_proxy, trusted_proxy)
    project = load_lenient(ctx)
    users = project.app.console
    _bind_check(host, behind_proxy, public_host, users)

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
    config_path, state_url = Path(ctx.obj["config"]), ctx.obj["state"]

    def runnable() -> Any:
        """The project with its secrets, as a replay needs it (read again each time)."""
        from integrator.errors import ConfigurationError
        from integrator.pipeline.project import load_project
        from integrator.pipeline.recovery import ActionRefused

        try:
            return load_project(config_path, state_url=state_url)
        except ConfigurationError as exc:
            raise ActionRefused(f"the project does not load with its secrets: {exc}") from None

    evaluator, note = _alarm_evaluator(project, config_path, state_url, store, alarm_interval)
    source = ConsoleSource(
        store=lambda: store,
        redactor=lambda: redactor,
        log_dir=lambda: project.app.log_dir,
        schedules=lambda: schedules,
        where="standalone",
        window=window,
        console=lambda: users,
        project=lambda: project,
        runnable=runnable,
        workbench=lambda: load_project(
            config_path, strict=False, need_secrets=False, state_url=state_url
        ),
        alarm_specs=lambda: {name: built.config.alarms for name, built in project.flows.items()},
        evaluator=evaluator,
        evaluator_note=note,
    )
    limits = HttpLimits()
    app = create_app(source, public_host=public_host)
    server = WebServer(app, host, port, limits, behind_proxy=behind_proxy, trusted_proxies=proxies)
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
    if evaluator is not None:
        evaluator.start()
    elif note:
        click.echo(f"alarms: not evaluated by this console: {note}", err=True)
    stop = threading.Event()

    def ask_stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    try:
        stop.wait()
    finally:
        if evaluator is not None:
            evaluator.stop()  # gives the lease up: a daemon or another console takes over
        server.stop()
        store.close()
    return 0


def _alarm_evaluator(
    project: Project, config_path: Path, state_url: str | None, store: Store, interval: float
) -> tuple[Evaluator | None, str | None]:
    """This console's alarm evaluator (the daemon's loop and lease), over the project loaded
    with its secrets (the notifiers' URLs and passwords); or None and why not."""
    from integrator.alarms.evaluator import Evaluator
    from integrator.errors import ConfigurationError
    from integrator.pipeline.project import load_project

    if not any(b.config.alarms for b in project.flows.values()):
        return None, "no flow declares alarms"
    try:
        full = load_project(config_path, strict=False, state_url=state_url)
    except ConfigurationError as exc:
        first = f": {exc.issues[0]}" if exc.issues else ""
        return None, (
            "the project does not load with its secrets (the notifiers need them)"
            f"{first}; a daemon, or `integrator alarms check`, evaluates them"
        )
    left = sorted(n for n, b in project.flows.items() if b.config.alarms and n not in full.flows)
    if left:
        click.echo(
            f"alarms: not evaluated by this console for {', '.join(left)}: the flow does not "
            "load with its secrets",
            err=True,
        )
    flows = [b.config for _n, b in sorted(full.flows.items())]
    return Evaluator(interval, lambda: (full.app, flows, store)), None


def _bind_check(
    host: str, behind_proxy: bool, public_host: str | None, users: ConsoleConfig | None
) -> None:
    """Loopback always; beyond it only with users, --behind-proxy and --public-host."""
    from integrator.console.guard import loopback_refusal

    if users is not None and users.unset:
        raise click.UsageError(
            "the console's users cannot be served: "
            + ", ".join(users.unset)
            + " come from variables that are not set (set them, or remove console.users)"
        )
    refusal = loopback_refusal(host)
    if refusal is None:
        return
    if users is None or not users.enabled:
        raise click.BadParameter(
            f"{refusal}. Beyond loopback the console needs users (config.yaml's console: "
            "users), TLS from a reverse proxy (--behind-proxy) and its host name (--public-host)",
            param_hint="--http",
        )
    if not behind_proxy or not public_host:
        raise click.BadParameter(
            f"{host} is reachable from other machines: the console listens there only behind "
            "a reverse proxy that terminates TLS (--behind-proxy) and answers only to the host "
            "name the proxy passes on (--public-host NAME); see the README",
            param_hint="--http",
        )


@console_cmd.command("hash-password")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (scripts), not the terminal.",
)
def hash_password_cmd(from_stdin: bool) -> int:
    """Print a password_hash for a console user (scrypt), reading the password without echo.

    \b
    integrator console hash-password > secrets/ayse.hash
    then in config.yaml:  password_hash: ${file:secrets/ayse.hash}
    """
    from integrator.console.users import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, err=True, type=str
        )
    if len(password) < 10:
        raise click.UsageError("a console password needs at least 10 characters")
    click.echo(hash_password(password))
    return 0


COMMANDS = [console_cmd]

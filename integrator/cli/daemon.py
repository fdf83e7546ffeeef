"""``integrator daemon`` and ``integrator flows``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click
from rich.table import Table

from integrator.cli.common import (
    alarm_interval_option,
    console,
    host_port,
    load_quiet,
    trusted_proxies,
    trusted_proxy_option,
)
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
    help="Where /healthz, /metrics and /events listen (port 0: any free port). Loopback "
    "only, unless --behind-proxy.",
)
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="Allow --http beyond loopback: a reverse proxy with TLS is in front of it "
    "(deploy/Caddyfile, deploy/nginx.conf), or a container publishes the port on the "
    "host's loopback only. The proxy's X-Forwarded-For and X-Forwarded-Proto (one hop) "
    "count on connections from --trusted-proxy only.",
)
@trusted_proxy_option
@click.option(
    "--public-host",
    metavar="NAME",
    help="With --behind-proxy and console users: the host name the proxy passes on in the "
    "Host header; the console is served beyond loopback only with it.",
)
@click.option(
    "--http-timeout",
    type=click.FloatRange(min=0.05, max=3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="A request must arrive whole (headers and body) within this, else 408 and the "
    "connection is closed; idle connections are closed after it too.",
)
@click.option(
    "--http-connections",
    type=click.IntRange(min=1, max=1000),
    default=100,
    show_default=True,
    metavar="N",
    help="Open HTTP connections at most. A client beyond them waits in the listen backlog "
    "while the connection idle longest, or the slowest request, is closed to let it in.",
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
@alarm_interval_option
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.05, max=3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the daemon records in the state store that it runs, with its console's "
    "URL: a standalone console over the same store links there for run now and the live "
    "view. A daemon killed without an orderly stop is forgotten 3 heartbeats later.",
)
@click.option("--console-logs", is_flag=True, help="Human-readable logs instead of JSON lines.")
@click.option(
    "--env-file",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Read variables from this .env file (NAME=value lines; the environment wins), once "
    "at start. The daemon reads no .env unless told, so that a forgotten one never fills in "
    "production variables.",
)
@click.pass_context
def daemon_cmd(
    ctx: click.Context,
    http: str,
    behind_proxy: bool,
    trusted_proxy: tuple[str, ...],
    public_host: str | None,
    http_timeout: float,
    http_connections: int,
    grace: float,
    watch: float,
    alarm_interval: float,
    heartbeat: float,
    console_logs: bool,
    env_file: Path | None,
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
    GET /metrics   Prometheus: orders, stage latency, ERP status codes, runs, quarantine,
                   alarms
    POST /events/<flow>   an event subscription's webhook (the flow's secret header)
    """
    from integrator.cli.envfile import load_env_file
    from integrator.config import load_app
    from integrator.scheduler.daemon import Daemon
    from integrator.scheduler.web import HttpLimits, bind_refusal

    host, port = host_port(http)
    refusal = bind_refusal(host, behind_proxy)
    if refusal is not None:
        raise click.BadParameter(refusal, param_hint="--http")
    proxies = trusted_proxies(behind_proxy, trusted_proxy)
    load_env_file(ctx, env_file)
    app = load_app(Path(ctx.obj["config"]), state_url=ctx.obj["state"])
    configure_logging(app.log_level, json=not console_logs, secrets=known_secrets(app))
    daemon = Daemon(
        Path(ctx.obj["config"]),
        host=host,
        port=port,
        grace_seconds=grace,
        watch_seconds=watch,
        state_url=ctx.obj["state"],
        http_limits=HttpLimits(
            request_seconds=http_timeout,
            idle_seconds=http_timeout,
            connections=http_connections,
        ),
        behind_proxy=behind_proxy,
        trusted_proxies=proxies,
        alarm_seconds=alarm_interval,
        public_host=public_host,
        heartbeat_seconds=heartbeat,
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

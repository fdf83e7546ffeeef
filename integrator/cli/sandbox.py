"""``integrator sandbox`` (the local servers, foreground) and ``integrator demo``."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shlex
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from integrator.cli.common import console, interruptible, load, order_progress, print_summary
from integrator.errors import UserError
from integrator.pipeline import run_flow
from integrator.sandbox import SANDBOX_ENV, running_sandbox
from integrator.state import Store

__all__ = ["COMMANDS"]


class _SandboxGroup(click.Group):
    """``integrator sandbox``: its help ends with the fault spec and every server's route names
    (read from the servers, imported only when the help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from integrator.sandbox import (
            ErpSandbox,
            JsonRpcErpSandbox,
            OmnitronSandbox,
            OmniumSandbox,
            SoapErpSandbox,
        )
        from integrator.sandbox.base import EXAMPLE, RULE_KEYS, SPEC_KEYS

        with formatter.section("Faults over HTTP (on any of the servers)"):
            formatter.write_text(
                "POST /_sandbox/faults with a JSON object replaces that server's faults ({} "
                "clears them); GET /_sandbox/faults shows them. Its keys:"
            )
            formatter.write_dl(list(SPEC_KEYS.items()))
            formatter.write_paragraph()
            formatter.write_text("A rule's keys:")
            formatter.write_dl(list(RULE_KEYS.items()))
            formatter.write_paragraph()
            formatter.write_text("For example (the ERP; curl's -d sends it as a form, also taken):")
            formatter.write(f"{'':{formatter.current_indent}}curl -d '{EXAMPLE}' \\\n")
            formatter.write(
                f"{'':{formatter.current_indent}}  http://127.0.0.1:8702/_sandbox/faults\n"
            )
        with formatter.section("Route names (--route, a rule's route, latency_ms)"):
            servers = (
                ("omnitron", OmnitronSandbox),
                ("erp", ErpSandbox),
                ("omnium", OmniumSandbox),
                ("jsonrpc", JsonRpcErpSandbox),
                ("soap", SoapErpSandbox),
            )
            formatter.write_dl([(name, ", ".join(cls.route_names())) for name, cls in servers])
        with formatter.section("Actions of their own (besides a rule's action list above)"):
            formatter.write_dl(
                [(name, ", ".join(cls.extra_actions)) for name, cls in servers if cls.extra_actions]
            )
            formatter.write_text(
                "app_error: the call gets its protocol's application error (a JSON-RPC error "
                "with HTTP 200, a SOAP Fault), nothing done; expire_sessions: every session "
                "dies, then the call is served (and finds its own dead)."
            )
        super().format_epilog(ctx, formatter)


@click.group("sandbox", cls=_SandboxGroup, invoke_without_command=True)
@click.option(
    "--orders",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="Unsent orders to seed (deterministic).",
)
@click.option("--omnitron-port", type=int, default=8701, show_default=True)
@click.option("--erp-port", type=int, default=8702, show_default=True)
@click.option("--omnium-port", type=int, default=8703, show_default=True)
@click.option("--jsonrpc-erp-port", type=int, default=8704, show_default=True)
@click.option("--soap-erp-port", type=int, default=8705, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--items-per-order", type=click.IntRange(min=1), help="Fixed items per order.")
@click.option(
    "--discounts-per-order", type=click.IntRange(min=0), help="Fixed discounts per order."
)
@click.pass_context
def sandbox_cmd(
    ctx: click.Context,
    orders: int,
    omnitron_port: int,
    erp_port: int,
    omnium_port: int,
    jsonrpc_erp_port: int,
    soap_erp_port: int,
    seed: int,
    items_per_order: int | None,
    discounts_per_order: int | None,
) -> int:
    """Serve a sandbox Omnitron, ERP and Omnium on 127.0.0.1 until Ctrl-C.

    The ERP comes in three kinds: REST (--erp-port), JSON-RPC, Odoo-like (--jsonrpc-erp-port,
    POST /jsonrpc) and SOAP 1.1/1.2 (--soap-erp-port, POST /soap).

    Faults are set while it runs, from another terminal: `integrator sandbox fault --help`,
    or POST /_sandbox/faults on a server (below); GET /_sandbox/stats tells what each holds.

    Writes .env beside config.yaml with the sandbox's values (hosts, ports, its test
    credentials) when there is none, so that validate and run-flow there need no exported
    variable; an existing .env is never overwritten (and is read: the environment wins).
    """
    if ctx.invoked_subcommand is not None:  # `sandbox fault ...`: talks to a running one
        return 0
    from integrator.cli.envfile import load_project_env, sandbox_env_report

    load_project_env(ctx)
    ports = {
        "Omnitron": omnitron_port,
        "ERP": erp_port,
        "Omnium": omnium_port,
        "JSON-RPC ERP": jsonrpc_erp_port,
        "SOAP ERP": soap_erp_port,
    }
    busy = [name for name, port in ports.items() if port and not _can_bind(port)]
    if busy:
        raise _port_error(busy, ports)
    with contextlib.ExitStack() as stack:
        try:
            sb = stack.enter_context(
                running_sandbox(
                    orders,
                    omnitron_port=omnitron_port,
                    erp_port=erp_port,
                    omnium_port=omnium_port,
                    jsonrpc_erp_port=jsonrpc_erp_port,
                    soap_erp_port=soap_erp_port,
                    seed=seed,
                    items_per_order=items_per_order,
                    discounts_per_order=discounts_per_order,
                )
            )
        except OSError as exc:
            if exc.errno == errno.EACCES:
                low = ", ".join(f"{p} ({_PORT_OPTIONS[n]})" for n, p in ports.items() if p < 1024)
                raise UserError(
                    f"not allowed to listen on port {low or 'these ports'}: choose ports "
                    "above 1023 (0: any free port)"
                ) from None
            if exc.errno != errno.EADDRINUSE:
                raise
            raise _port_error(list(ports), ports) from None  # taken since the check above
        # From here Ctrl-C asks for an orderly stop whenever it comes (while the lines below
        # are printed too): a KeyboardInterrupt raised in the middle of a print would leave
        # without stopping the servers in order or saying so.
        stop = threading.Event()
        before = signal.signal(signal.SIGINT, lambda *_: stop.set())
        stack.callback(signal.signal, signal.SIGINT, before)  # a second Ctrl-C: at once
        console.print(f"Omnitron sandbox: {sb.omnitron.url}  ({orders} orders)")
        console.print(f"ERP sandbox:      {sb.erp.url}")
        if sb.omnium is not None:
            console.print(f"Omnium sandbox:   {sb.omnium.url}  ({orders} orders)")
        if sb.jsonrpc_erp is not None:
            console.print(f"JSON-RPC ERP:     {sb.jsonrpc_erp.url}/jsonrpc  (Odoo-like)")
        if sb.soap_erp is not None:
            console.print(f"SOAP ERP:         {sb.soap_erp.url}/soap  (SOAP 1.1 and 1.2)")
        for line in sandbox_env_report(Path(ctx.obj["config"]), sb.env(), SANDBOX_ENV):
            console.print(line, markup=False)
        console.print("Ctrl-C stops.")
        while not stop.wait(0.5):  # the handler sets it; a timeout keeps signals looked at
            pass
    console.print("sandbox stopped")
    return 0


# ------------------------------------------------------------ integrator sandbox fault
# server → (its URL's variable, the `sandbox` option of its port, that option's default)
_SERVERS = {
    "omnitron": ("OMNITRON_URL", "omnitron_port", 8701),
    "erp": ("ERP_URL", "erp_port", 8702),
    "omnium": ("OMNIUM_URL", "omnium_port", 8703),
    "jsonrpc": ("JSONRPC_ERP_URL", "jsonrpc_erp_port", 8704),
    "soap": ("SOAP_ERP_URL", "soap_erp_port", 8705),
}
# a server's label in messages → the option of its port
_PORT_OPTIONS = {
    "Omnitron": "--omnitron-port",
    "ERP": "--erp-port",
    "Omnium": "--omnium-port",
    "JSON-RPC ERP": "--jsonrpc-erp-port",
    "SOAP ERP": "--soap-erp-port",
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _sandbox_url(ctx: click.Context, server: str, url: str | None) -> str:
    """Where ``server`` runs: --url; else `sandbox --erp-port` (etc.) when given; else
    $ERP_URL (etc., as .env has it) when it names this machine; else the default port."""
    if url:
        return url.rstrip("/")
    from integrator.cli.envfile import load_project_env

    load_project_env(ctx)  # the sandbox's .env names its servers
    variable, option, default = _SERVERS[server]
    sandbox_ctx: click.Context | None = ctx
    while sandbox_ctx is not None and sandbox_ctx.command is not sandbox_cmd:
        sandbox_ctx = sandbox_ctx.parent
    if (
        sandbox_ctx is not None
        and sandbox_ctx.get_parameter_source(option) is ParameterSource.COMMANDLINE
    ):
        return f"http://127.0.0.1:{sandbox_ctx.params[option]}"
    from_env = os.environ.get(variable, "")
    if from_env and urlsplit(from_env).hostname in _LOOPBACK:
        return from_env.rstrip("/")
    return f"http://127.0.0.1:{default}"


def _call(server: str, url: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """GET (``spec`` None) or POST the faults of the sandbox at ``url``; UserError says what
    went wrong and what to do."""
    import requests

    where = f"{url}/_sandbox/faults"
    try:
        with requests.Session() as session:
            session.trust_env = False  # a sandbox on this machine: no proxy from the environment
            if spec is None:
                resp = session.get(where, timeout=5)
            else:
                resp = session.post(where, json=spec, timeout=5)
    except requests.ConnectionError:
        raise UserError(
            f"no {server} sandbox answers at {url}: start one with `integrator sandbox` (in "
            "another terminal), or give its address with --url"
        ) from None
    except requests.RequestException as exc:
        raise UserError(f"the {server} sandbox at {url}: {type(exc).__name__}") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if resp.status_code == 400 and isinstance(answer, dict):
        problems = answer.get("problems") or [answer.get("detail", "")]
        raise UserError(
            f"the {server} sandbox refused the faults (nothing changed):\n  "
            + "\n  ".join(str(p) for p in problems)
        )
    if resp.status_code != 200 or not isinstance(answer, dict):
        raise UserError(
            f"{url} is not a sandbox {server} (it answered {resp.status_code} to "
            "/_sandbox/faults): give a sandbox's address with --url"
        )
    return answer


def _describe(rule: dict[str, Any]) -> str:
    """One rule, in words."""
    action = rule.get("action", "?")
    what = f"answer {rule.get('status')}" if action == "status" else action
    if action == "status" and rule.get("retry_after") is not None:
        what += f" (Retry-After: {rule['retry_after']})"
    if rule.get("seconds") and action in ("timeout", "latency", "status_then_commit"):
        what += f" after {rule['seconds']:g} s"
    route = rule.get("route", "*")
    text = f"{what} on {'every route' if route == '*' else route}"
    count = rule.get("count", -1)
    text += ", every call" if count < 0 else f", {count} more call{'s' if count != 1 else ''}"
    if rule.get("rate", 1.0) < 1.0:
        text += f" ({rule['rate']:.0%} of them)"
    if rule.get("numbers"):
        text += f", orders {', '.join(rule['numbers'])}"
    return text


def _show(server: str, url: str, table: dict[str, Any]) -> None:
    rules, latency = table.get("rules") or [], table.get("latency_ms") or {}
    head = f"{server} ({url}):"
    if not rules and not latency:
        console.print(f"{head} no faults", markup=False)
        return
    console.print(head, markup=False)
    for rule in rules:
        console.print(f"  {_describe(rule)}", markup=False)
    for route, ms in latency.items():
        where = "every route" if route == "*" else route
        console.print(f"  {ms:g} ms added on {where}", markup=False)


@sandbox_cmd.group("fault")
def fault_group() -> None:
    """Set the faults of a running sandbox (`integrator sandbox`, in another terminal).

    Each server has one fault table; setting one replaces it. The address is --url, else
    the sandbox's port options given before `fault`, else $OMNITRON_URL / $ERP_URL /
    $OMNIUM_URL / $JSONRPC_ERP_URL / $SOAP_ERP_URL when they name this machine (as the
    sandbox's .env does), else the default ports 8701 / 8702 / 8703 / 8704 / 8705.

    \b
      integrator sandbox fault erp --status 503 --count 3   the next 3 ERP calls answer 503
      integrator sandbox fault erp --route create --action drop_after_commit --count 1
      integrator sandbox fault omnitron --latency-ms 200     every Omnitron call 200 ms later
      integrator sandbox fault jsonrpc --route create --action app_error --count 2
      integrator sandbox fault soap --action expire_sessions --count 1
      integrator sandbox fault show                          the faults in force
      integrator sandbox fault clear                         no faults, on every server

    `integrator sandbox --help` lists the actions and every server's route names.
    """


def _server_command(server: str) -> click.Command:
    @click.command(server)
    @click.option("--action", metavar="ACTION", help="What the rule does (default: status).")
    @click.option("--route", default="*", show_default=True, help="A route name, or * (all).")
    @click.option("--status", type=int, help="The status code to answer (default 500).")
    @click.option("--count", type=int, help="Fire on this many calls (default: every call).")
    @click.option("--rate", type=float, help="Fire on this share of calls (0 to 1).")
    @click.option("--retry-after", help="A Retry-After header for --action status.")
    @click.option("--seconds", type=float, help="For timeout, latency, status_then_commit.")
    @click.option("--number", "numbers", multiple=True, help="Only calls about this order.")
    @click.option("--body", help="For --action body: the text answered instead.")
    @click.option("--latency-ms", type=float, help="Milliseconds added to --route's calls.")
    @click.option("--seed", type=int, help="Seed of the random choices (--rate).")
    @click.option("--url", help="The server's address (see `integrator sandbox fault --help`).")
    @click.pass_context
    def command(ctx: click.Context, /, url: str | None, **given: Any) -> int:
        rule_keys = ("action", "status", "count", "rate", "retry_after", "seconds", "body")
        rule = {k: given[k] for k in rule_keys if given[k] is not None}
        if given["numbers"]:
            rule["numbers"] = list(given["numbers"])
        spec: dict[str, Any] = {"rules": []}
        if rule or given["latency_ms"] is None:  # only --latency-ms: no rule
            spec["rules"] = [{"action": "status", "route": given["route"], **rule}]
        if given["latency_ms"] is not None:
            spec["latency_ms"] = {given["route"]: given["latency_ms"]}
        if given["seed"] is not None:
            spec["seed"] = given["seed"]
        address = _sandbox_url(ctx, server, url)
        table = _call(server, address, spec)
        _show(server, address, table if "rules" in table else spec)  # an older sandbox: "ok"
        return 0

    command.help = (
        f"Replace the {server} sandbox's faults with one rule (and/or --latency-ms).\n\n"
        "With no option: every call answers 500. Nothing changes when the sandbox refuses "
        "the rule (an unknown action or route): it says what is allowed."
    )
    return command


for _server in _SERVERS:
    fault_group.add_command(_server_command(_server))


def _each(ctx: click.Context, servers: tuple[str, ...], spec: dict[str, Any] | None) -> int:
    """Apply to the named servers (all: those running, at least one)."""
    named = bool(servers)
    answered = 0
    for server in servers or tuple(_SERVERS):
        address = _sandbox_url(ctx, server, None)
        try:
            table = _call(server, address, spec)
        except UserError:
            if named:
                raise
            console.print(f"{server} ({address}): not running", markup=False)
            continue
        answered += 1
        _show(server, address, table)
    if not answered:
        raise UserError(
            "no sandbox answers on this machine: start one with `integrator sandbox` (in "
            "another terminal)"
        )
    return 0


_SERVER_ARG = click.argument("servers", nargs=-1, type=click.Choice(list(_SERVERS)))


@fault_group.command("clear")
@_SERVER_ARG
@click.pass_context
def fault_clear(ctx: click.Context, servers: tuple[str, ...]) -> int:
    """No faults on SERVERS (default: every running server)."""
    return _each(ctx, servers, {})


@fault_group.command("show")
@_SERVER_ARG
@click.pass_context
def fault_show(ctx: click.Context, servers: tuple[str, ...]) -> int:
    """The faults in force on SERVERS (default: every running server)."""
    return _each(ctx, servers, None)


@click.command("demo")
@click.option("--orders", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--flow", default="order_flow", show_default=True)
@click.pass_context
def demo_cmd(ctx: click.Context, orders: int, flow: str) -> int:
    """Start the sandbox in-process, run the order flow once against it, print a summary.

    The sandbox's test credentials are put in the environment (only where unset), exactly as
    real secrets would be passed. The demo keeps a state store of its own (state/demo/ beside
    config.yaml), new on every demo; the commands it prints at the end look into it.
    """
    for k, v in SANDBOX_ENV.items():
        os.environ.setdefault(k, v)
    with running_sandbox(orders) as sb:
        os.environ.update({"OMNITRON_URL": sb.omnitron.url, "ERP_URL": sb.erp.url})
        project = load(ctx)
        o0, e0 = sb.omnitron.stats(), sb.erp.stats()
        console.print(f"sandbox: Omnitron {sb.omnitron.url}, ERP {sb.erp.url}", markup=False)
        console.print(
            f"  Omnitron holds {o0['orders']} orders: {o0['unsent']} unsent (the flow sends "
            f"these), {o0['sent']} seeded as already sent (delivered before the demo: the ERP "
            f"holds them too, so it starts with {e0['orders']}), {o0['cancelled']} cancelled "
            "(status 100: the flow reads status 400 only)",
            markup=False,
        )
        # The demo's own state store, new on every demo: a fresh sandbox against an old
        # ledger would be another source and another ERP.
        folder = project.app.base_dir / "state" / "demo"
        shutil.rmtree(folder, ignore_errors=True)
        # Its run logs too: its run ids start at 1 again, and must not append to the project's.
        project.app = dataclasses.replace(project.app, log_dir=folder / "logs")
        url = f"sqlite:///{folder / 'integrator.db'}"
        store = Store(url)
        try:
            with interruptible(30.0) as intr, order_progress(True) as advance:
                result, run = run_flow(
                    project, flow, on_order=advance, metrics=advance.metrics, store=store,
                    stop=intr.event, grace=30.0,
                )  # fmt: skip
            print_summary(result, run)
            o, e = sb.omnitron.stats(), sb.erp.stats()
            console.print(
                f"Omnitron: {o['sent']} sent ({o['sent'] - o0['sent']} by this run + "
                f"{o0['sent']} seeded as sent), {o['unsent']} unsent; ERP: {e['orders']} orders "
                f"({e['orders'] - e0['orders']} written now + {e0['orders']} seeded), "
                f"{e['duplicates']} duplicates",
                markup=False,
            )
            console.print(f"ledger: {store.journal.count_states(flow)}", markup=False)
            tried = _order_to_try(store, flow)
        finally:
            store.close()
    if tried is not None:
        number, what = tried
        console.print(f"an order to try: {number} ({what})", markup=False)
    cmd = _invocation(ctx)
    console.print(
        "next, on the demo's own store (kept until the next demo; the sandbox stopped with "
        "the demo):",
        markup=False,
    )
    base = f"{cmd} --state {shlex.quote(url)}"
    console.print(f"  {base} runs", markup=False)
    if tried is not None:
        console.print(f"  {base} orders show {shlex.quote(tried[0])}", markup=False)
    return 0 if result.status == "ok" else 1


def _port_error(busy: list[str], ports: dict[str, int]) -> UserError:
    """The ports the sandbox cannot listen on, named with the options that change them."""
    named = ", ".join(f"{ports[n]} ({n}: {_PORT_OPTIONS[n]})" for n in busy)
    return UserError(
        f"cannot listen on 127.0.0.1 port {named}: in use by another process. Is a sandbox "
        "already running? Stop it (Ctrl-C in its terminal), or choose another port (0: any "
        "free port)"
    )


def _can_bind(port: int) -> bool:
    """Whether a server could listen on ``port`` now (as the sandbox binds: SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def _order_to_try(store: Store, flow: str) -> tuple[str, str] | None:
    """One order of the run worth looking at, and what happened to it: a done one (its ERP
    reference), else one that failed or was held."""
    done = store.journal.in_state("done", flow, limit=1)
    if done:
        ref = f" as {done[0].erp_ref}" if done[0].erp_ref else ""
        return done[0].order_number, f"written to the ERP{ref}, then marked sent in Omnitron"
    other = store.journal.in_state(("failed", "quarantined", "sent", "marked"), flow, limit=1)
    if other:
        return other[0].order_number, f"{other[0].state}: {other[0].last_error or ''}".rstrip(": ")
    return None


def _invocation(ctx: click.Context) -> str:
    """The integrator command as the user ran it, to print commands that work as written:
    ``.venv/bin/integrator`` when started that way, ``integrator`` when found on PATH,
    ``python -m integrator`` with the same interpreter; and --config when one was given."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = Path(argv0).name
    if name == "__main__.py":  # python -m integrator: the interpreter as it was typed
        orig = list(getattr(sys, "orig_argv", []) or [sys.executable])
        at = next(
            (i for i in range(len(orig) - 1) if orig[i] == "-m" and orig[i + 1] == "integrator"),
            None,
        )
        words = orig[: at + 2] if at is not None else [orig[0], "-m", "integrator"]
    elif name.startswith("integrator"):
        found = shutil.which(name)
        same = found is not None and Path(found).resolve() == Path(argv0).resolve()
        words = [name if same else argv0]
    else:  # called from Python (a test runner, an embedding): the installed command
        words = ["integrator"]
    root = ctx.find_root()
    if root.get_parameter_source("config") not in (ParameterSource.DEFAULT, None):
        words += ["--config", str(root.params["config"])]
    return shlex.join(words)


COMMANDS = [sandbox_cmd, demo_cmd]

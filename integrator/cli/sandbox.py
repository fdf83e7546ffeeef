"""``integrator sandbox`` (the local servers, foreground) and ``integrator demo``."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from typing import Any
from urllib.parse import urlsplit

import click

from integrator.cli.common import console, interruptible, load, order_progress, print_summary
from integrator.errors import FatalError
from integrator.pipeline import run_flow
from integrator.sandbox import SANDBOX_ENV, running_sandbox
from integrator.state import Store

__all__ = ["COMMANDS"]


class _SandboxGroup(click.Group):
    """``integrator sandbox``: its help ends with the fault spec and every server's route names
    (read from the servers, imported only when the help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from integrator.sandbox import ErpSandbox, OmnitronSandbox, OmniumSandbox
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
            )
            formatter.write_dl([(name, ", ".join(cls.route_names())) for name, cls in servers])
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
    seed: int,
    items_per_order: int | None,
    discounts_per_order: int | None,
) -> int:
    """Serve a sandbox Omnitron, ERP and Omnium on 127.0.0.1 until Ctrl-C.

    Faults are set while it runs, from another terminal: `integrator sandbox fault --help`,
    or POST /_sandbox/faults on a server (below); GET /_sandbox/stats tells what each holds.
    """
    if ctx.invoked_subcommand is not None:  # `sandbox fault ...`: talks to a running one
        return 0
    with running_sandbox(
        orders,
        omnitron_port=omnitron_port,
        erp_port=erp_port,
        omnium_port=omnium_port,
        seed=seed,
        items_per_order=items_per_order,
        discounts_per_order=discounts_per_order,
    ) as sb:
        console.print(f"Omnitron sandbox: {sb.omnitron.url}  ({orders} orders)")
        console.print(f"ERP sandbox:      {sb.erp.url}")
        if sb.omnium is not None:
            console.print(f"Omnium sandbox:   {sb.omnium.url}  ({orders} orders)")
        console.print("point the runner at them with:")
        for k, v in sb.env().items():
            console.print(f"  export {k}={v}", markup=False)
        console.print("Ctrl-C stops.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    console.print("sandbox stopped")
    return 0


# ------------------------------------------------------------ integrator sandbox fault
# server → (its URL's variable, the `sandbox` option of its port, that option's default)
_SERVERS = {
    "omnitron": ("OMNITRON_URL", "omnitron_port", 8701),
    "erp": ("ERP_URL", "erp_port", 8702),
    "omnium": ("OMNIUM_URL", "omnium_port", 8703),
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _sandbox_url(ctx: click.Context, server: str, url: str | None) -> str:
    """Where ``server`` runs: --url; else `sandbox --erp-port` (etc.) when given; else
    $ERP_URL (etc., as .env has it) when it names this machine; else the default port."""
    if url:
        return url.rstrip("/")
    variable, option, default = _SERVERS[server]
    sandbox_ctx: click.Context | None = ctx
    while sandbox_ctx is not None and sandbox_ctx.command is not sandbox_cmd:
        sandbox_ctx = sandbox_ctx.parent
    if (
        sandbox_ctx is not None
        and sandbox_ctx.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE
    ):
        return f"http://127.0.0.1:{sandbox_ctx.params[option]}"
    from_env = os.environ.get(variable, "")
    if from_env and urlsplit(from_env).hostname in _LOOPBACK:
        return from_env.rstrip("/")
    return f"http://127.0.0.1:{default}"


def _call(server: str, url: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """GET (``spec`` None) or POST the faults of the sandbox at ``url``; FatalError says what
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
        raise FatalError(
            f"no {server} sandbox answers at {url}: start one with `integrator sandbox` (in "
            "another terminal), or give its address with --url"
        ) from None
    except requests.RequestException as exc:
        raise FatalError(f"the {server} sandbox at {url}: {type(exc).__name__}") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if resp.status_code == 400 and isinstance(answer, dict):
        problems = answer.get("problems") or [answer.get("detail", "")]
        raise FatalError(
            f"the {server} sandbox refused the faults (nothing changed):\n  "
            + "\n  ".join(str(p) for p in problems)
        )
    if resp.status_code != 200 or not isinstance(answer, dict):
        raise FatalError(
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
    $OMNIUM_URL when they name this machine (as the sandbox's .env does), else the default
    ports 8701 / 8702 / 8703.

    \b
      integrator sandbox fault erp --status 503 --count 3   the next 3 ERP calls answer 503
      integrator sandbox fault erp --route create --action drop_after_commit --count 1
      integrator sandbox fault omnitron --latency-ms 200     every Omnitron call 200 ms later
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
        _show(server, address, _call(server, address, spec))
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
        except FatalError:
            if named:
                raise
            console.print(f"{server} ({address}): not running", markup=False)
            continue
        answered += 1
        _show(server, address, table)
    if not answered:
        raise FatalError(
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
    real secrets would be passed.
    """
    for k, v in SANDBOX_ENV.items():
        os.environ.setdefault(k, v)
    with running_sandbox(orders) as sb:
        os.environ.update({"OMNITRON_URL": sb.omnitron.url, "ERP_URL": sb.erp.url})
        project = load(ctx)
        console.print(
            f"sandbox: Omnitron {sb.omnitron.url} ({sb.omnitron.stats()['unsent']} "
            f"unsent orders), ERP {sb.erp.url}"
        )
        # The demo's own state store, new on every demo: a fresh sandbox against an old
        # ledger would be another source and another ERP.
        folder = project.app.base_dir / "state" / "demo"
        shutil.rmtree(folder, ignore_errors=True)
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
                f"Omnitron: {o['sent']} sent, {o['unsent']} unsent; ERP: {e['orders']} "
                f"orders, {e['duplicates']} duplicates"
            )
            console.print(f"ledger: {store.journal.count_states(flow)}")
            done = store.journal.in_state("done", flow, limit=1)
        finally:
            store.close()
        state = f"--state {url}"
        console.print(
            "next, on the demo's own store (kept until the next demo):\n"
            f"  integrator {state} runs\n"
            f"  integrator {state} orders show {done[0].order_number if done else 'NUMBER'}",
            markup=False,
        )
    return 0 if result.status == "ok" else 1


COMMANDS = [sandbox_cmd, demo_cmd]

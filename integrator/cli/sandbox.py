"""``integrator sandbox`` (the local servers, foreground) and ``integrator demo``."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shlex
import shutil
import socket
import sys
import threading
from pathlib import Path

import click
from click.core import ParameterSource

from integrator.cli.common import console, interruptible, load, order_progress, print_summary
from integrator.errors import UserError
from integrator.pipeline import run_flow
from integrator.sandbox import SANDBOX_ENV, running_sandbox
from integrator.state import Store

__all__ = ["COMMANDS"]


@click.command("sandbox")
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

    Faults are injected at run time: POST /_sandbox/faults on either server; GET
    /_sandbox/stats tells what each holds.

    Writes .env beside config.yaml with the sandbox's values (hosts, ports, its test
    credentials) when there is none, so that validate and run-flow there need no exported
    variable; an existing .env is never overwritten (and is read: the environment wins).
    """
    from integrator.cli.envfile import load_project_env, sandbox_env_report

    load_project_env(ctx)
    ports = {"Omnitron": omnitron_port, "ERP": erp_port, "Omnium": omnium_port}
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
                    seed=seed,
                    items_per_order=items_per_order,
                    discounts_per_order=discounts_per_order,
                )
            )
        except OSError as exc:
            if exc.errno == errno.EACCES:
                low = ", ".join(f"{p} (--{n.lower()}-port)" for n, p in ports.items() if p < 1024)
                raise UserError(
                    f"not allowed to listen on port {low or 'these ports'}: choose ports "
                    "above 1023 (0: any free port)"
                ) from None
            if exc.errno != errno.EADDRINUSE:
                raise
            raise _port_error(list(ports), ports) from None  # taken since the check above
        console.print(f"Omnitron sandbox: {sb.omnitron.url}  ({orders} orders)")
        console.print(f"ERP sandbox:      {sb.erp.url}")
        if sb.omnium is not None:
            console.print(f"Omnium sandbox:   {sb.omnium.url}  ({orders} orders)")
        for line in sandbox_env_report(Path(ctx.obj["config"]), sb.env(), SANDBOX_ENV):
            console.print(line, markup=False)
        console.print("Ctrl-C stops.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


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
                    project, flow, on_order=advance, store=store, stop=intr.event, grace=30.0
                )
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
    named = ", ".join(f"{ports[n]} ({n}: --{n.lower()}-port)" for n in busy)
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

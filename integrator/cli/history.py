"""``integrator runs`` and ``integrator orders show``: what happened, from the state store;
``integrator orders export``: an order as the source holds it now, as test data."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from integrator.cli.common import console, load, load_lenient
from integrator.cli.envfile import load_project_env
from integrator.config import AppConfig, load_app
from integrator.connectors.redact import Redactor, known_secrets
from integrator.errors import UserError
from integrator.pipeline.project import policy_for
from integrator.pipeline.stage import SourceStage
from integrator.state import Ledger, State, Store

if TYPE_CHECKING:
    from integrator.pipeline.project import BuiltFlow, Project

__all__ = ["COMMANDS"]


def _when(value: Any) -> str:
    """A stored time as ISO 8601 with its zone (the store keeps UTC)."""
    if not isinstance(value, dt.datetime):
        return str(value or "")
    at = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return at.isoformat(timespec="seconds")


@click.command("runs")
@click.option("--flow", help="Only this flow.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_context
def runs_cmd(ctx: click.Context, flow: str | None, limit: int) -> int:
    """The latest runs, newest first, with their counts and status (times in UTC)."""
    load_project_env(ctx)
    app = load_app(Path(ctx.obj["config"]), need_secrets=False, state_url=ctx.obj["state"])
    shown = Redactor(known_secrets(app)).scrub  # a second net over what runs stored scrubbed
    store = Store(app.state_url)
    try:
        rows = store.runs.latest(flow, limit)
        known = store.runs.flows() if flow and not rows else []
    finally:
        store.close()
    if flow and not rows and flow not in known:
        defined = _defined_flows(app)
        if flow not in defined:
            names = ", ".join(sorted(set(defined) | set(known))) or "none"
            raise click.UsageError(
                f"no flow named {flow!r}; known flows: {names} (`integrator flows` lists the "
                "project's flows)"
            )
    table = Table(title="runs")
    for col in ("id", "flow", "started", "ended", "status", "ok", "failed", "skipped"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in rows:
        skipped = str(r["orders_skipped"])
        if r.get("skipped_json"):
            by = json.loads(r["skipped_json"])
            skipped += " (" + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) + ")"
        table.add_row(
            str(r["id"]),
            r["flow"],
            _when(r["started_at"]),
            _when(r["ended_at"]),
            r["status"],
            str(r["orders_ok"]),
            str(r["orders_failed"]),
            skipped,
            shown(r["error"] or ""),
        )
    console.print(table)
    if not rows:
        name = flow or "FLOW"
        console.print(f"no runs{f' of {flow}' if flow else ''} yet: integrator run-flow {name}")
    return 0


def _defined_flows(app: AppConfig) -> list[str]:
    """The names of the flows the project's flow files define (the readable ones)."""
    from integrator.config.load import load_flows

    return [f.name for f in load_flows(app, [], need_secrets=False)]


@click.group("orders")
def orders_group() -> None:
    """Look up orders: in the state store (show), or live from a flow's source (export)."""


CASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@orders_group.command("show")
@click.argument("number")
@click.option("--flow", help="Only this flow.")
@click.pass_context
def orders_show(ctx: click.Context, number: str, flow: str | None) -> int:
    """Journal, events, deliveries and log. attributes of order NUMBER, across runs; and why
    a run would skip it now."""
    project = load_lenient(ctx)
    # What the store shows was scrubbed by the run that wrote it (with what it learned: login
    # tokens, channel.conf); this second net masks the configuration's secrets and URL
    # credentials again, in case a value was stored unmasked.
    redactor = Redactor(known_secrets(project.app))
    shown = redactor.scrub
    store = Store(project.app.state_url)
    try:
        h = store.journal.history(number, flow)
        entries = {j["flow"]: store.journal.entry(j["flow"], number) for j in h["journal"]}
        notes: dict[str, str] = {}
        for name, entry in entries.items():
            built = project.flows.get(name)
            if entry is None or built is None:
                continue
            ledger = Ledger(store, name, policy_for(project.app, built), redactor)
            notes[name] = _status_note(ledger, entry, built.stages)
    finally:
        store.close()
    if not h["journal"]:
        console.print(f"order {number} is not in the state store: no run has read it yet")
        return 1
    for j in h["journal"]:
        console.print(
            f"[bold]{j['flow']}[/bold] order {number} (pk {j['order_pk']}): "
            f"[bold]{j['state']}[/bold], attempts {j['attempts']}"
            + (f", ERP ref {shown(j['erp_ref'])}" if j["erp_ref"] else "")
            + (f", written to {j['target_id']}" if j.get("target_id") else "")
            + (f"\n  last error: {shown(j['last_error'])}" if j["last_error"] else "")
            + (f"\n  now: {shown(notes[j['flow']])}" if notes.get(j["flow"]) else "")
        )
    ev = Table(title="events")
    for col in ("at", "run", "state", "fact"):
        ev.add_column(col, no_wrap=True)
    ev.add_column("message", overflow="fold")
    for e in h["events"]:
        ev.add_row(
            _when(e["at"]), str(e["run_id"] or ""), e["state"], e.get("fact") or "",
            shown(e["message"] or ""),
        )  # fmt: skip
    console.print(ev)
    if h["deliveries"]:
        dl = Table(title="deliveries")
        for col in ("at", "run", "kind", "connector", "connector id"):
            dl.add_column(col, no_wrap=True)
        dl.add_column("note", overflow="fold")
        for d in h["deliveries"]:
            dl.add_row(
                _when(d["at"]), str(d["run_id"] or ""), d["kind"], d["connector"],
                d["connector_id"] or "", shown(d["note"] or ""),
            )  # fmt: skip
        console.print(dl)
    if h["log"]:
        lg = Table(title="log. attributes")
        for col in ("at", "run", "key"):
            lg.add_column(col, no_wrap=True)
        lg.add_column("value", overflow="fold")
        for r in h["log"]:
            lg.add_row(_when(r["at"]), str(r["run_id"] or ""), r["key"], shown(r["value"] or ""))
        console.print(lg)
    return 0


@orders_group.command("export")
@click.argument("number")
@click.option("--flow", help="The flow whose source is read (needed when there are several).")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the JSON to FILE instead of stdout.",
)
@click.option(
    "--golden",
    "case",
    metavar="CASE",
    help="Write the golden case flows/tests/<flow>/CASE.order.json and CASE.expected.json.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.pass_context
def orders_export(
    ctx: click.Context,
    number: str,
    flow: str | None,
    output: Path | None,
    case: str | None,
    force: bool,
) -> int:
    """Read order NUMBER live from a flow's source and write it as test data (JSON).

    \b
    The source stage reads it as a run does (Omnitron: detail, items and discounts assembled;
    Omnium: by Id, or by OrderNumber among the orders the flow reads), whatever its state
    (sent ones included); channel.conf is masked, and so is every secret the configuration
    knows. Nothing is written to the state store or the ERP. The JSON is what
    `integrator test-flow FLOW --input FILE` and the golden tests take.

    \b
    Examples:
      integrator orders export 202611000007 > order.json
      integrator orders export 202611000007 --flow order_flow -o order.json
      integrator orders export 202611000007 --flow order_flow --golden late_discount
    """
    from integrator.pipeline.trace import export_order

    if not number.strip():
        raise click.BadParameter("an order number is needed", param_hint="NUMBER")
    if case is not None and output is not None:
        raise click.UsageError("give --golden CASE or --output FILE, not both")
    if case is not None and (not CASE_NAME.fullmatch(case) or ".." in case):
        raise click.BadParameter(
            f"{case!r}: a case is a file name (letters, digits, '_', '-', '.'; not a path)",
            param_hint="--golden",
        )
    project = load(ctx)
    built = project.flow(flow) if flow is not None else _only_flow(project)
    name = built.config.name
    folder = project.app.flows_dir / "tests" / name
    targets = (
        [folder / f"{case}.order.json", folder / f"{case}.expected.json"]
        if case is not None
        else [output] if output is not None else []
    )  # fmt: skip
    for t in targets:
        if not t.parent.is_dir() and t.parent != folder:
            raise UserError(f"{t}: its folder {t.parent} does not exist; create it first")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:  # said before the source is called
        raise UserError(
            f"{', '.join(existing)} exists: not overwritten; give --force to replace it"
        )
    doc = export_order(project, built, number)
    if doc is None:
        source = next(s for s in built.stages if isinstance(s, SourceStage))
        click.echo(
            f"error: order {number}: {built.config.source} has no order {number!r} that flow "
            f"{name}'s source stage ({source.name}) finds (`integrator orders export --help` "
            "says how each source looks an order up)",
            err=True,
        )
        return 1
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if case is None and output is None:
        click.echo(text, nl=False)
        return 0
    if output is not None:
        _write(output, text)
        click.echo(f"order {number} from {built.config.source} written to {output}", err=True)
        return 0
    from integrator.pipeline.trace import sandbox_answer, trace_flow

    order_file, expected_file = targets
    folder.mkdir(parents=True, exist_ok=True)
    _write(order_file, text)
    click.echo(f"order {number} from {built.config.source} written to {order_file}", err=True)
    trace = trace_flow(project, built, doc, answer=sandbox_answer)
    if trace.error:
        expected_file.unlink(missing_ok=True)  # --force: the old payload is not this order's
        click.echo(
            f"the flow fails on it ({trace.error}); no {expected_file.name} written: "
            "`integrator test-flow --golden` reports the case until the flow handles it "
            "and `integrator test-flow --golden --update` records its payload",
            err=True,
        )
        return 0
    payload = Redactor(known_secrets(project.app)).redact(trace.request)
    _write(expected_file, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    click.echo(
        f"its ERP payload written to {expected_file}: check it, then run "
        "`integrator test-flow --golden`",
        err=True,
    )
    return 0


def _only_flow(project: Project) -> BuiltFlow:
    """The project's one flow; a usage error naming the flows when there are several."""
    if len(project.flows) == 1:
        return next(iter(project.flows.values()))
    names = ", ".join(sorted(project.flows)) or "none"
    raise click.UsageError(f"give --flow FLOW: the project has several flows ({names})")


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file, then renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _status_note(ledger: Ledger, entry: Any, stages: list[Any]) -> str:
    """What the next run does with the order, in words."""
    skip = ledger.why_skipped(entry)
    if skip:
        return f"skipped by runs: {skip}"
    state = State(entry.state)
    if state in (State.SENT, State.MARKED):
        if not any(s.marks for s in stages):
            return (
                "the ERP has it; the flow's source cannot say whether it is marked, so the row "
                "stays until the source lists the order again"
            )
        return "the ERP has it: the next run that lists it marks it; otherwise the source is asked"
    if state is State.SENDING:
        return "the last write's outcome is unknown: the next run settles it"
    if state is State.FAILED:
        return "due: the next run tries it again"
    return ""


COMMANDS = [runs_cmd, orders_group]

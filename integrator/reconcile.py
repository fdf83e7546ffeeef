"""Reconciliation: does the ERP hold exactly the orders the OMS shows as sent, for the same
amounts?

For an Omnitron order flow: the OMS side is every order with ``is_send=true``, read by pk
cursor from the flow's ``read`` paths; the ERP side is every order the ERP lists at
``reconcile.erp_list`` (followed by ``next``). Four lists come out: sent in the OMS but missing
in the ERP, in the ERP but not marked sent in the OMS, in the ERP and unknown to the OMS, and
orders on both sides whose amounts differ.

``--since`` is one window on both sides: the orders *placed* since then (the OMS's
``date_placed``, the one date both sides know the order by). The ERP lists by its own creation
time, which comes after the placing (a backlog sent today was placed last week) and is read on
the ERP's clock, so the ERP side is read from a day earlier and each order it holds is put in
or out of the window by its ``date_placed`` in the OMS: an order placed before ``--since`` and
created in the ERP after it is outside the window (counted, not compared), and one placed
after ``--since`` that the ERP dates before it (a clock behind, or naive local times) is
inside. An order unknown to the OMS has only the ERP's date: it is in the window when the ERP
created it since then.

**ERPs asked one order at a time** (``reconcile.erp_query: query_check``; the default when the
flow has a query_check stage and ``reconcile:`` names no ``erp_list``): many ERPs (JSON-RPC,
SOAP, POST search endpoints) cannot list what they hold. Then each order the OMS shows as sent
in the window is asked for through the flow's own query_check stage, as a run asks it (the
same request, answer rules, login and connector limits), at most
``reconcile.requests_per_second`` questions a second on top of the connector's own limits (a
429 pauses the host, as in a run). Found: the amounts are compared (``erp_amount`` is a path
in query_check's answer); not found: missing in the ERP; an error answer (by the answer
rules), a failure status or a failed call: "could not ask", with the reason, never counted as
missing. What the ERP holds that the OMS does not show as sent cannot be known this way, and
the result says so (``erp_listed`` false).

The document query_check's templates read is the OMS's listing row when every ``_order`` path
they read is a plain path the row has (Omnitron's row has ``number``, ``pk``, ``amount``…: no
further call); otherwise the order is assembled as a run assembles it (detail, items,
discounts). Templates that read attributes or the payload set by stages before query_check
(scripts, mappings, which reconcile does not run) are refused with a message.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import jmespath

from integrator.config.model import FlowConfig, ReconcileSettings
from integrator.connectors.http import Connector, parse_json
from integrator.connectors.limits import HostLimiter
from integrator.connectors.redact import Redactor, known_secrets
from integrator.errors import (
    ConfigIssue,
    ConfigurationError,
    FatalError,
    OrderError,
    SystemicError,
)
from integrator.mapping.expr import placeholders
from integrator.mapping.paths import select
from integrator.pipeline.context import RunContext, stage_scope
from integrator.pipeline.project import BuiltFlow, Project, connector_for, policy_for
from integrator.pipeline.stage import OrderRef
from integrator.stages.query_check import QueryCheckStage
from integrator.stages.read import ReadStage
from integrator.stages.snapshot import SnapshotStage
from integrator.stages.watermark import MAX_PAGES, linked_pages

__all__ = ["CLOCK_SLACK", "Reconciliation", "reconcile"]

# The attributes an order has when query_check runs right after read (read sets them).
BASE_ATTRIBUTES = frozenset({"order.number", "order.pk", "flow.name", "run.id"})
# Questions in flight at once in the query_check mode (the rate is the real bound).
ASK_WORKERS = 4

# How far the ERP's creation times may lag the OMS's placing times and still be found: clocks
# apart, an ERP that keeps naive local times or reads the filter in its own zone (up to 14 h).
CLOCK_SLACK = dt.timedelta(days=1)


@dataclass
class Reconciliation:
    """What one reconciliation found."""

    flow: str
    since: str | None
    oms_sent: int = 0
    erp_orders: int = 0
    missing_in_erp: list[str] = field(default_factory=list)
    not_marked_in_oms: list[str] = field(default_factory=list)
    unknown_to_oms: list[str] = field(default_factory=list)
    amount_mismatches: list[tuple[str, str, str]] = field(default_factory=list)  # number, oms, erp
    outside_window: int = 0  # in the ERP since --since, but placed before it: not compared
    stock_differences: list[tuple[str, str, str]] = field(default_factory=list)  # key, erp, oms
    erp_query: str = "list"  # how the ERP was asked: "list", "query_check" (or "stock")
    could_not_ask: list[tuple[str, str]] = field(default_factory=list)  # number, why
    assembled: int = 0  # query_check: orders assembled (its templates read beyond the row)
    requests_per_second: float = 0.0  # query_check: the rate the ERP was asked at

    @property
    def erp_listed(self) -> bool:
        """Whether the ERP's own list was read: only then are orders the OMS does not show as
        sent (``not_marked_in_oms``, ``unknown_to_oms``) known."""
        return self.erp_query != "query_check"

    @property
    def differences(self) -> int:
        """How many orders need a look (those the ERP could not be asked about included)."""
        return (
            len(self.missing_in_erp)
            + len(self.not_marked_in_oms)
            + len(self.unknown_to_oms)
            + len(self.amount_mismatches)
            + len(self.stock_differences)
            + len(self.could_not_ask)
        )

    def counts(self) -> dict[str, int]:
        """Per kind, for metrics; kinds this way of asking cannot know are left out."""
        out = {
            "missing_in_erp": len(self.missing_in_erp),
            "not_marked_in_oms": len(self.not_marked_in_oms),
            "unknown_to_oms": len(self.unknown_to_oms),
            "amount_mismatch": len(self.amount_mismatches),
            "stock": len(self.stock_differences),
            "could_not_ask": len(self.could_not_ask),
        }
        if not self.erp_listed:
            del out["not_marked_in_oms"], out["unknown_to_oms"]
        return out


def _amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None


def _get(conn: Connector, path: str, params: dict[str, Any] | None = None) -> Any:
    try:
        return parse_json(conn.request("GET", path, params=params), f"{conn.name} {path}")
    except OrderError as exc:
        raise FatalError(f"reconcile: {exc}") from None


def _oms_orders(
    conn: Connector, read: ReadStage, since: str | None, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """OMS order summaries matching ``params``, by pk cursor."""
    url = read.list_url()
    query: dict[str, Any] = {"ordering": "pk", "limit": read.page_size, **params}
    if since:
        query["date_placed__gte"] = since
    out: list[dict[str, Any]] = []
    cursor = 0
    for _ in range(MAX_PAGES):
        page = _get(conn, url, {**query, "pk__gt": cursor})
        rows = page.get("results") if isinstance(page, dict) else None
        if not isinstance(rows, list):
            raise FatalError(f"reconcile: {conn.name} {url}: expected {{'results': [...]}}")
        out += [r for r in rows if isinstance(r, dict)]
        if len(rows) < read.page_size:
            break
        cursor = max(int(r["pk"]) for r in rows)
    return out


def _placed(row: dict[str, Any]) -> dt.datetime | None:
    """When an OMS order was placed (UTC when the value has no zone); None when unreadable."""
    value = row.get("date_placed") or row.get("created_date")
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _in_window(row: dict[str, Any], since: dt.datetime | None) -> bool:
    """Placed at or after ``since`` (an unreadable date counts in: compared, never hidden)."""
    placed = _placed(row)
    return since is None or placed is None or placed >= since


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _oms_order(
    conn: Connector, read: ReadStage, number: str, *, sent: bool = False
) -> dict[str, Any] | None:
    """The OMS's order ``number`` (only if marked sent, with ``sent``), or None."""
    params = {"number": number, **({"is_send": "true"} if sent else {})}
    return next(
        (o for o in _oms_orders(conn, read, None, params) if str(o.get("number")) == number), None
    )


def _erp_orders(conn: Connector, s: ReconcileSettings, since: str | None) -> dict[str, Any]:
    """ERP order number → amount, following ``next`` links."""
    assert s.erp_list is not None  # the list mode has one (load checks it)
    out: dict[str, Any] = {}
    params = {s.erp_since_param: since} if since else None
    for rows in linked_pages(conn, s.erp_list, params, "reconcile"):
        for row in rows:
            number = jmespath.search(s.erp_number, row)
            if number not in (None, ""):
                out[str(number)] = jmespath.search(s.erp_amount, row)
    return out


def _issue(flow: FlowConfig, key: str, message: str) -> ConfigurationError:
    return ConfigurationError([ConfigIssue(flow.file, key, message)])


def reconcile(
    project: Project,
    name: str,
    since: dt.datetime | None = None,
    *,
    stop: threading.Event | None = None,
) -> Reconciliation:
    """Compare the OMS's sent orders with the ERP's orders for flow ``name``. ``stop`` (the
    daemon stopping): no further order is asked about, and the reconciliation fails."""
    built = project.flow(name)
    flow = built.config
    settings = flow.reconcile or ReconcileSettings()
    snapshot = next((s for s in built.stages if isinstance(s, SnapshotStage)), None)
    if snapshot is not None:
        return _stock(project, flow.name, flow.source, flow.target, snapshot)
    read = next((s for s in built.stages if isinstance(s, ReadStage)), None)
    if read is None:
        raise _issue(
            flow,
            "stages",
            "reconcile needs an Omnitron `read` stage (orders) or a `stock_snapshot` stage (stock)",
        )
    mode = settings.mode(s.name for s in flow.stages)
    if mode is None:
        raise _issue(
            flow,
            "reconcile",
            "reconcile cannot ask the ERP: write reconcile.erp_list (a GET endpoint listing the "
            "ERP's orders, paged by next links), or add a query_check stage to the flow "
            "(reconcile then asks for each order through it)",
        )
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    if mode == "query_check":
        return _ask_each(project, built, read, settings, since, stop or threading.Event())
    when = _stamp(since) if since else None
    wide = _stamp(since - CLOCK_SLACK) if since else None
    redactor = Redactor(known_secrets(project.app))
    source = connector_for(project.app, flow.source, redactor, 4)
    target = connector_for(project.app, flow.target, redactor, 4)
    result = Reconciliation(flow.name, when)
    try:
        source.login()
        target.login()
        listed = {
            str(o["number"]): o
            for o in _oms_orders(source, read, wide, {"is_send": "true"})
            if o.get("number") not in (None, "")
        }
        sent = {n: o for n, o in listed.items() if _in_window(o, since)}
        sent_before = set(listed) - set(sent)  # sent, placed in the day before the window
        erp = _erp_orders(target, settings, when)
        late = set(sent) - set(erp)
        if late and wide is not None:  # placed in the window, dated before it by the ERP
            earlier = _erp_orders(target, settings, wide)
            erp.update({n: earlier[n] for n in late if n in earlier})
        for number in sorted(set(erp) - set(sent)):
            if number in sent_before:
                result.outside_window += 1
                continue
            found = _oms_order(source, read, number)
            if found is None:
                result.unknown_to_oms.append(number)
            elif not _in_window(found, since):
                result.outside_window += 1
            elif _oms_order(source, read, number, sent=True) is not None:
                sent[number] = found  # marked sent after the listing: compared below
            else:
                result.not_marked_in_oms.append(number)
        result.oms_sent = len(sent)
        result.erp_orders = len(erp) - result.outside_window
        result.missing_in_erp = sorted(set(sent) - set(erp))
        for number in sorted(set(sent) & set(erp)):
            oms = _amount(jmespath.search(settings.oms_amount, sent[number]))
            theirs = _amount(erp[number])
            if oms != theirs:
                result.amount_mismatches.append((number, str(oms), str(theirs)))
    finally:
        source.close()
        target.close()
    return result


# ------------------------------------------------------------ one order at a time (query_check)


@dataclass(frozen=True)
class _Needs:
    """What query_check's templates read of an order."""

    paths: tuple[tuple[str | int, ...], ...]  # plain paths into the order
    whole: bool  # an expression over the whole order (a function, ``${_order}``)


def _strings(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template]
    if isinstance(template, dict):
        return [t for v in template.values() for t in _strings(v)]
    if isinstance(template, list):
        return [t for v in template for t in _strings(v)]
    return []


def _needs(flow: FlowConfig, check: QueryCheckStage) -> _Needs:
    """The ``_order`` paths query_check's templates read; a ConfigurationError when they read
    what only the stages before query_check set in a run (reconcile does not run those)."""
    req = check.request
    names = [s.name for s in flow.stages]
    before = names[: names.index("query_check")] if "query_check" in names else names
    earlier = [n for n in before if n not in ("login", "read")]
    paths: list[tuple[str | int, ...]] = []
    whole = False
    for text in _strings([req.url, [v for _, v in req.headers], req.body]):
        for ph in placeholders(text):
            try:
                expr = ph.compiled()
            except ValueError:
                continue  # validate reports it; the question fails with it as "could not ask"
            steps = expr.steps
            is_base = expr.attribute and expr.text in BASE_ATTRIBUTES
            reads_run = (expr.attribute and not is_base) or bool(
                expr.roots & {"attributes", "data"}
            )
            if reads_run and earlier:
                raise _issue(
                    flow,
                    "reconcile",
                    f"reconcile asks the flow's query_check without running the stages before "
                    f"it ({', '.join(earlier)}), and its template reads ${{{ph.text}}}, which "
                    "those stages may set in a run; write the question from _order, vars, "
                    "connector or login, or use reconcile.erp_list",
                )
            if steps and steps[0] in ("_order", "data"):
                paths.append(tuple(steps[1:]))
            elif "_order" in expr.roots or "data" in expr.roots:
                whole = True
    return _Needs(tuple(paths), whole)


def _at(steps: tuple[str | int, ...], doc: Any) -> Any:
    """The value at plain path ``steps`` in ``doc``, or None when absent."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(doc, list) or not -len(doc) <= step < len(doc):
                return None
        elif not isinstance(doc, dict) or step not in doc:
            return None
        doc = doc[step]
    return doc


def _row_enough(needs: _Needs, row: dict[str, Any]) -> bool:
    """Whether the listing row has every value query_check's templates read (a null counts as
    missing: the assembled order may have it)."""
    if needs.whole or any(not p for p in needs.paths):
        return False
    return all(_at(p, row) is not None for p in needs.paths)


def _ask_each(
    project: Project,
    built: BuiltFlow,
    read: ReadStage,
    settings: ReconcileSettings,
    since: dt.datetime | None,
    stop: threading.Event,
) -> Reconciliation:
    """Each order the OMS shows as sent, asked for through the flow's query_check."""
    flow = built.config
    check = next((s for s in built.stages if isinstance(s, QueryCheckStage)), None)
    if check is None:
        raise _issue(flow, "reconcile.erp_query", "the flow has no query_check stage to ask with")
    needs = _needs(flow, check)
    when = _stamp(since) if since else None
    result = Reconciliation(
        flow.name, when, erp_query="query_check",
        requests_per_second=settings.requests_per_second,
    )  # fmt: skip
    redactor = Redactor(known_secrets(project.app))
    source = connector_for(project.app, flow.source, redactor, 4)
    target = connector_for(project.app, flow.target, redactor, ASK_WORKERS)
    limiter = HostLimiter(0, settings.requests_per_second)  # on top of the connector's own
    lock, stopped = threading.Lock(), threading.Event()  # stopped: a systemic error
    fatal: list[BaseException] = []
    assembled: list[int] = [0]
    fetch_pool = ThreadPoolExecutor(4, thread_name_prefix="reconcile-fetch")
    # A stage of our own for assembling orders: the project's flow may be running (the daemon).
    reader = type(read)(**read.o)
    reader.open(
        RunContext(
            app=project.app,
            flow=flow,
            store=None,
            redactor=redactor,
            source=source,
            target=target,
            ledger=_ledger(project, built, redactor),
            fetch_pool=fetch_pool,
        )
    )

    def document(row: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        number, pk = str(row["number"]), str(row.get("pk", ""))
        if _row_enough(needs, row):
            attrs = {"order.number": number, "order.pk": pk, "flow.name": flow.name}
            return row, {**attrs, "run.id": "0"}
        ex = reader.fetch(OrderRef(pk, number, row))
        with lock:
            assembled[0] += 1
        return ex.order, ex.attributes

    def ask(number: str, row: dict[str, Any]) -> None:
        if stop.is_set() or stopped.is_set():
            return
        try:
            order, attrs = document(row)
            scope = stage_scope(flow, target, order, attrs, order)
            _turn(limiter, target.limiter)
            got = check.ask(target, scope)
        except SystemicError as exc:  # credentials refused, a breaker: every order would fail
            stopped.set()
            with lock:
                fatal.append(exc)
            return
        except OrderError as exc:
            with lock:
                result.could_not_ask.append((number, redactor.scrub(str(exc))))
            return
        if not got.found:
            with lock:
                result.missing_in_erp.append(number)
            return
        theirs = select(settings.erp_amount, got.answer)
        ours = _amount(jmespath.search(settings.oms_amount, row))
        with lock:
            result.erp_orders += 1
            if theirs is None:
                result.could_not_ask.append(
                    (
                        number,
                        f"found in the ERP ({got.what}), but its answer has no amount at "
                        f"{settings.erp_amount!r} (reconcile.erp_amount): not compared",
                    )
                )
            elif ours != _amount(theirs):
                result.amount_mismatches.append((number, str(ours), str(_amount(theirs))))

    try:
        source.login()
        target.login()
        sent = {
            str(o["number"]): o
            for o in _oms_orders(source, read, when, {"is_send": "true"})
            if o.get("number") not in (None, "") and _in_window(o, since)
        }
        result.oms_sent = len(sent)
        pool = ThreadPoolExecutor(ASK_WORKERS, thread_name_prefix="reconcile-ask")
        try:
            for future in [pool.submit(ask, n, o) for n, o in sorted(sent.items())]:
                future.result()
        finally:  # an interrupt: the questions not started are dropped, not waited for
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        fetch_pool.shutdown(wait=True)
        source.close()
        target.close()
    if fatal:
        raise FatalError(f"reconcile stopped: {redactor.scrub(str(fatal[0]))}")
    if stop.is_set():
        raise FatalError("reconcile stopped before every order was asked about (stopping)")
    result.assembled = assembled[0]
    result.missing_in_erp.sort()
    result.amount_mismatches.sort()
    result.could_not_ask.sort()
    return result


def _turn(own: HostLimiter, host: HostLimiter) -> None:
    """Wait for a question's turn: reconcile's rate, and no start while a 429 holds the host
    (a turn taken during the pause is taken again after it, so the questions waiting do not
    all start at once when it ends)."""
    while True:
        with own.slot():
            pass
        left = host.pause_left()
        if left <= 0:
            return
        time.sleep(left)


def _ledger(project: Project, built: BuiltFlow, redactor: Redactor) -> Any:
    """A ledger without a store (the run context wants one; reconcile records nothing)."""
    from integrator.state.ledger import Ledger

    return Ledger(None, built.config.name, policy_for(project.app, built), redactor)


def _stock(
    project: Project, name: str, source_name: str, target_name: str, snapshot: SnapshotStage
) -> Reconciliation:
    """Stock: every ERP entry whose quantity the OMS does not have (the stock flow's work)."""
    redactor = Redactor(known_secrets(project.app))
    source = connector_for(project.app, source_name, redactor, 4)
    target = connector_for(project.app, target_name, redactor, 4)
    result = Reconciliation(name, None, erp_query="stock")
    try:
        source.login()
        target.login()
        diffs, unchanged = snapshot.differences(source, target)
    finally:
        source.close()
        target.close()
    result.erp_orders = len(diffs) + unchanged
    result.stock_differences = [(k, str(e), "—" if o is None else str(o)) for k, e, o, _ in diffs]
    return result

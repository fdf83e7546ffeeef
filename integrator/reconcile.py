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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import jmespath

from integrator.config.model import ReconcileSettings
from integrator.connectors.http import Connector, parse_json
from integrator.connectors.redact import Redactor, known_secrets
from integrator.errors import ConfigIssue, ConfigurationError, FatalError, OrderError
from integrator.pipeline.project import Project, connector_for
from integrator.stages.read import ReadStage
from integrator.stages.snapshot import SnapshotStage
from integrator.stages.watermark import MAX_PAGES, linked_pages

__all__ = ["CLOCK_SLACK", "Reconciliation", "reconcile"]

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

    @property
    def differences(self) -> int:
        """How many orders need a look."""
        return (
            len(self.missing_in_erp)
            + len(self.not_marked_in_oms)
            + len(self.unknown_to_oms)
            + len(self.amount_mismatches)
            + len(self.stock_differences)
        )

    def counts(self) -> dict[str, int]:
        """Per kind, for metrics."""
        return {
            "missing_in_erp": len(self.missing_in_erp),
            "not_marked_in_oms": len(self.not_marked_in_oms),
            "unknown_to_oms": len(self.unknown_to_oms),
            "amount_mismatch": len(self.amount_mismatches),
            "stock": len(self.stock_differences),
        }


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
    out: dict[str, Any] = {}
    params = {s.erp_since_param: since} if since else None
    for rows in linked_pages(conn, s.erp_list, params, "reconcile"):
        for row in rows:
            number = jmespath.search(s.erp_number, row)
            if number not in (None, ""):
                out[str(number)] = jmespath.search(s.erp_amount, row)
    return out


def reconcile(project: Project, name: str, since: dt.datetime | None = None) -> Reconciliation:
    """Compare the OMS's sent orders with the ERP's orders for flow ``name``."""
    built = project.flow(name)
    flow = built.config
    settings = flow.reconcile or ReconcileSettings()
    snapshot = next((s for s in built.stages if isinstance(s, SnapshotStage)), None)
    if snapshot is not None:
        return _stock(project, flow.name, flow.source, flow.target, snapshot)
    read = next((s for s in built.stages if isinstance(s, ReadStage)), None)
    if read is None:
        raise ConfigurationError(
            [
                ConfigIssue(
                    flow.file,
                    "stages",
                    "reconcile needs an Omnitron `read` stage (orders) or a `stock_snapshot` "
                    "stage (stock)",
                )
            ]
        )
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
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


def _stock(
    project: Project, name: str, source_name: str, target_name: str, snapshot: SnapshotStage
) -> Reconciliation:
    """Stock: every ERP entry whose quantity the OMS does not have (the stock flow's work)."""
    redactor = Redactor(known_secrets(project.app))
    source = connector_for(project.app, source_name, redactor, 4)
    target = connector_for(project.app, target_name, redactor, 4)
    result = Reconciliation(name, None)
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

"""Reconciliation: does the ERP hold exactly the orders the OMS shows as sent, for the same
amounts?

For an Omnitron order flow: the OMS side is every order with ``is_send=true`` (placed since
``--since``), read by pk cursor from the flow's ``read`` paths; the ERP side is every order the
ERP lists at ``reconcile.erp_list`` (created since ``--since``, followed by ``next``). Four
lists come out: sent in the OMS but missing in the ERP, in the ERP but not marked sent in the
OMS, in the ERP and unknown to the OMS, and orders on both sides whose amounts differ.
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

__all__ = ["Reconciliation", "reconcile"]


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
    when = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") if since else None
    redactor = Redactor(known_secrets(project.app))
    source = connector_for(project.app, flow.source, redactor, 4)
    target = connector_for(project.app, flow.target, redactor, 4)
    result = Reconciliation(flow.name, when)
    try:
        source.login()
        target.login()
        sent = {
            str(o["number"]): o
            for o in _oms_orders(source, read, when, {"is_send": "true"})
            if o.get("number") not in (None, "")
        }
        erp = _erp_orders(target, settings, when)
        result.oms_sent, result.erp_orders = len(sent), len(erp)
        result.missing_in_erp = sorted(set(sent) - set(erp))
        for number in sorted(set(erp) - set(sent)):
            found = _oms_orders(source, read, None, {"number": number})
            if found and not found[0].get("is_send", False):
                result.not_marked_in_oms.append(number)
            elif not found:
                result.unknown_to_oms.append(number)
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

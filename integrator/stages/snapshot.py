"""stock_snapshot: a full sync source. The ERP's whole list against the OMS's, and only the
entries that differ go through the flow.

The ERP side is read from the source connector at ``erp_path`` (pages linked by ``next``), the
OMS side from the target at ``oms_path`` (Omnium's ``take``/``page`` with ``result``). Entries
are matched by key (``erp_key``/``oms_key``: JMESPath lists, joined with ``@``, such as
``sku@warehouse``) and compared on ``erp_quantity``/``oms_quantity``; equal ones are skipped.
Only the quantity goes to the OMS: what the OMS keeps for itself (reserved stock) is never read
into the write, so it is never overwritten.

Each entry is a ledger entry numbered ``<key>@<UTC date>``: one sync per day, a rerun the same
day retries what failed and skips what is done, and the next day compares afresh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jmespath

from integrator.config.checks import Options
from integrator.connectors.bodies import parse_json
from integrator.errors import FatalError, OrderError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, OrderRef, SourceStage, Stage
from integrator.stages.watermark import MAX_PAGES, linked_pages, row_exchange

if TYPE_CHECKING:
    from integrator.connectors.http import Connector
    from integrator.pipeline.context import RunContext

__all__ = ["SnapshotStage"]


class SnapshotStage(SourceStage):
    """ERP list vs OMS list; the differences, one per ledger entry."""

    name = "stock_snapshot"
    allowed = {
        "erp_path",
        "oms_path",
        "erp_key",
        "oms_key",
        "erp_quantity",
        "oms_quantity",
        "page_size",
    }

    def __init__(self, o: dict[str, Any]) -> None:
        self.o = o
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Paths, keys and quantity fields of both sides; page size."""
        return cls(
            {
                "erp_path": opts.get("erp_path", str, "/api/stock/"),
                "oms_path": opts.get("oms_path", str, "/api/Inventory"),
                "erp_key": opts.get("erp_key", str, "[sku, warehouse]"),
                "oms_key": opts.get("oms_key", str, "[sku, warehouseId]"),
                "erp_quantity": opts.get("erp_quantity", str, "quantity"),
                "oms_quantity": opts.get("oms_quantity", str, "inventory"),
                "page_size": opts.get(
                    "page_size", int, 100, check=lambda v: None if v >= 1 else "expected 1 or more"
                ),
            }
        )

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    @staticmethod
    def _key(expr: str, row: Any) -> str | None:
        found = jmespath.search(expr, row)
        parts = found if isinstance(found, list) else [found]
        if not parts or any(p in (None, "") for p in parts):
            return None
        return "@".join(str(p) for p in parts)

    @staticmethod
    def _get(conn: Connector, path: str, params: dict[str, Any] | None) -> Any:
        try:
            return parse_json(conn.request("GET", path, params=params), f"{conn.name} {path}")
        except OrderError as exc:
            raise FatalError(f"stock snapshot: {exc}") from None

    def _oms(self, conn: Connector) -> dict[str, Any]:
        o, out = self.o, {}
        for page in range(MAX_PAGES):
            data = self._get(conn, o["oms_path"], {"take": o["page_size"], "page": page})
            rows = data.get("result") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise FatalError(f"{conn.name} {o['oms_path']}: expected {{'result': [...]}}")
            for row in rows:
                key = self._key(o["oms_key"], row)
                if key is not None:
                    out[key] = jmespath.search(o["oms_quantity"], row)
            if len(rows) < int(o["page_size"]):
                break
        return out

    def _erp(self, conn: Connector) -> Iterator[dict[str, Any]]:
        params = {"limit": self.o["page_size"]}
        for rows in linked_pages(conn, self.o["erp_path"], params, "stock snapshot"):
            yield from (r for r in rows if isinstance(r, dict))

    def differences(
        self, source: Connector, target: Connector
    ) -> tuple[list[tuple[str, Any, Any, dict[str, Any]]], int]:
        """``([(key, ERP quantity, OMS quantity or None, ERP row)], unchanged count)``; also
        what ``integrator reconcile`` reports for a stock flow."""
        oms = self._oms(target)
        out, unchanged = [], 0
        for row in self._erp(source):
            key = self._key(self.o["erp_key"], row)
            if key is None:
                continue
            quantity = jmespath.search(self.o["erp_quantity"], row)
            if key in oms and oms[key] == quantity:
                unchanged += 1
            else:
                out.append((key, quantity, oms.get(key), row))
        return out, unchanged

    def iter_orders(self, run: RunContext, only: str | None = None) -> Iterator[OrderRef]:
        """The ERP entries whose quantity the OMS does not have (``only``: that key)."""
        only = only or run.only_order
        diffs, unchanged = self.differences(run.source, run.target)
        day = dt.datetime.now(dt.UTC).date().isoformat()
        refs = [
            OrderRef(key, f"{key}@{day}", {**row, "oms_quantity": oms})
            for key, _erp, oms, row in diffs
        ]
        states = run.states([r.number for r in refs])
        due = [r for r in refs if states.get(r.number) != "done"]
        run.event(None, "snapshot", f"{unchanged} unchanged; {len(due)} to sync")
        for ref in due:
            if only and only not in (ref.pk, ref.number):
                continue
            yield ref

    def recorded(self, run: RunContext, doc: dict[str, Any]) -> Exchange:
        """A recorded ERP stock entry."""
        self.run = run
        key = self._key(self.o["erp_key"], doc) or ""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        return self.fetch(OrderRef(key, f"{key}@{day}", doc))

    def fetch(self, ref: OrderRef) -> Exchange:
        """The ERP entry is the whole unit."""
        assert self.run is not None
        return row_exchange(self.run, ref, **{"stock.key": ref.pk})

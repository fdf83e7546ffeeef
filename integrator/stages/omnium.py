"""Omnium as a source: delta polling with a stored watermark, and Omnium's write-back.

``omnium_read`` lists orders with ``POST /api/Orders/Search`` (``ModifiedFrom`` inclusive,
``SelectedStatuses``, ``SortOrder: ModifiedAscending``, ``DisableFacets``, ``Take`` ≤ 100).
Pages are read by keyset: the next page starts at the last ``Modified`` seen (Page 0), so orders
that leave the result set while the run marks them cannot shift an offset past others. A page
that is entirely one instant cannot be passed by keyset; the rest is then read from a Scroll
snapshot, which the run's own write-back cannot shift either. When more than 10,000
orders match (Omnium's ``Take * Page`` limit) the run reads them with the Scroll API instead
(``POST /api/Orders/Scroll``, then ``GET /api/Orders/Scroll/{scrollId}`` until empty).

The watermark (per flow, in the store) starts at ``start`` and moves, when the run ends, to the
``Modified`` of the last order of the longest run of listed orders, in ``Modified`` order, that
are all done. ``ModifiedFrom`` is inclusive, so the next run reads the boundary orders again;
an order whose journal says done is skipped without a call, so nothing is sent twice, and a
crash before the watermark is saved only means reading again. An order whose modification
comes from the runner's own write-back is skipped the same way.

``omnium_mark`` is this source's mark-as-sent: ``PatchOrder`` with ``externalIds`` (the ERP
reference; runs no workflow), then ``UpdateStatus`` (default ``InProgress``), which takes the
order out of the ``New`` result set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from integrator.config.checks import Options
from integrator.connectors.bodies import parse_json
from integrator.errors import FatalError, OrderError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, OrderRef, SourceStage, Stage
from integrator.stages.watermark import (
    Listed,
    advance_watermark,
    parse_time,
    row_exchange,
    time_check,
    yaml_time,
)
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["OmniumMarkStage", "OmniumReadStage"]

MAX_TAKE = 100
# A done order listed as New again counts as reset only when it was modified this long after
# we finished it: the search index may lag, and Omnium's clock is not ours.
RESET_MARGIN = dt.timedelta(seconds=60)
MAX_WINDOW = 10_000  # Take * Page


def _instant(text: str) -> dt.datetime:
    """Omnium's time: a naive one means UTC."""
    t = parse_time(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


class OmniumReadStage(SourceStage):
    """Delta search from the watermark; scroll for backfills over 10,000 orders."""

    name = "omnium_read"
    allowed = {"statuses", "take", "start", "search_path", "scroll_path"}

    def __init__(
        self,
        statuses: list[str],
        take: int = MAX_TAKE,
        start: str = "1970-01-01T00:00:00Z",
        search_path: str = "/api/Orders/Search",
        scroll_path: str = "/api/Orders/Scroll",
    ) -> None:
        self.statuses, self.take, self.start = statuses, take, start
        self.search_path, self.scroll_path = search_path, scroll_path
        self.run: RunContext | None = None
        self.listed: list[Listed] = []

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Statuses to read, page size, the first watermark, paths."""
        yaml_time(opts, "start")
        statuses = opts.get("statuses", list, ["New"])
        return cls(
            [str(s) for s in statuses],
            opts.get(
                "take",
                int,
                MAX_TAKE,
                check=lambda v: (
                    None if 1 <= v <= MAX_TAKE else "expected 1 to 100 (Omnium's limit)"
                ),
            ),
            opts.get("start", str, "1970-01-01T00:00:00Z", check=time_check),
            opts.get("search_path", str, "/api/Orders/Search"),
            opts.get("scroll_path", str, "/api/Orders/Scroll"),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run; nothing listed yet."""
        self.run = run
        self.listed = []

    # ------------------------------------------------------------------ listing
    def _body(self, since: str, page: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ModifiedFrom": since,
            "SelectedStatuses": self.statuses,
            "SortOrder": "ModifiedAscending",
            "DisableFacets": True,
        }
        if page is not None:
            body.update(Take=self.take, Page=page)
        return body

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        run = self.run
        assert run is not None
        try:
            resp = run.source.request("POST", path, json_body=body)
            data = parse_json(resp, f"{run.source.name} {path}")
        except OrderError as exc:
            raise FatalError(f"reading orders from {run.source.name} failed: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise FatalError(f"{run.source.name} {path}: expected {{'result': [...]}}")
        return data

    def _keyset(self, since: str, first: dict[str, Any]) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        rows, frm = first["result"], since
        while True:
            for row in rows:
                if isinstance(row, dict) and row.get("Id") not in seen:
                    seen.add(str(row.get("Id")))
                    yield row
            if len(rows) < self.take:
                return
            last = str(rows[-1].get("Modified"))
            if last == frm:
                # A whole page on one instant: Page offsets would shift as the run takes
                # orders out of the result set, so read the rest from a scroll snapshot.
                yield from (r for r in self._scroll(frm) if str(r.get("Id")) not in seen)
                return
            frm = last  # keyset: start again at the last instant seen
            rows = self._post(self.search_path, self._body(frm, 0))["result"]

    def _scroll(self, since: str) -> Iterator[dict[str, Any]]:
        run = self.run
        assert run is not None
        data = self._post(self.scroll_path, self._body(since, None))
        yield from data["result"]
        sid = data.get("scrollId")
        while sid and data["result"]:
            try:
                resp = run.source.request("GET", f"{self.scroll_path}/{sid}")
                data = parse_json(resp, f"{run.source.name} scroll")
            except OrderError as exc:
                raise FatalError(f"scrolling orders from {run.source.name} failed: {exc}") from None
            if not isinstance(data, dict) or not isinstance(data.get("result"), list):
                raise FatalError(f"{run.source.name} scroll: expected {{'result': [...]}}")
            yield from data["result"]

    def _one(self, run: RunContext, oid: str) -> list[dict[str, Any]] | None:
        """``--order`` / an event: the order by its Id (None: no such Id), if it is one this
        flow reads (an empty list when not)."""
        try:
            resp = run.source.request(
                "GET", f"/api/Orders/{quote(oid, safe='')}", ok_status=frozenset({404})
            )
        except OrderError as exc:
            raise FatalError(f"reading order {oid} from {run.source.name} failed: {exc}") from None
        if resp.status_code == 404:
            return None
        order = parse_json(resp, f"{run.source.name} order")
        if not isinstance(order, dict):
            return None
        if self.statuses and order.get("Status") not in self.statuses:
            run.event(
                None, "ignored", f"order {oid} is {order.get('Status')}: not read by this flow"
            )
            return []
        return [order]

    def iter_orders(self, run: RunContext, only: str | None = None) -> Iterator[OrderRef]:
        """Orders modified since the watermark, oldest first; done ones skipped."""
        only = only or run.only_order
        if only:
            one = self._one(run, only)
            if one is not None:  # an Id: that order, or nothing when the flow does not read it
                yield from self._refs(run, one, only)
                return
            # not an Id: an OrderNumber, found by reading from ``start``
        since = self.start if only else (run.watermark() or self.start)
        first = self._post(self.search_path, self._body(since, 0))
        total = int(first.get("totalHits") or 0)
        rows = self._scroll(since) if total > MAX_WINDOW else self._keyset(since, first)
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= self.take:
                yield from self._refs(run, batch, only)
                batch = []
        yield from self._refs(run, batch, only)

    def _refs(
        self, run: RunContext, rows: list[dict[str, Any]], only: str | None
    ) -> Iterator[OrderRef]:
        good = []
        for row in rows:
            oid, modified = row.get("Id"), row.get("Modified")
            number = row.get("OrderNumber") or oid
            if not oid or not isinstance(modified, str) or time_check(modified):
                run.event(
                    None, "invalid", f"Omnium order skipped: no Id or Modified in {str(row)[:120]}"
                )
                continue
            good.append((row, str(oid), str(number), modified))
        done_at = run.done_at([n for _, _, n, _ in good])
        for row, oid, number, modified in good:
            if only and only not in (number, oid):
                continue
            if not only:  # a run of one order moves no watermark
                self.listed.append((_instant(modified), number, modified))
            finished = done_at.get(number)
            if finished is not None and _instant(modified) <= finished + RESET_MARGIN:
                # done, and not changed since: the watermark's inclusive boundary, or a search
                # index that has not caught up with our own write-back
                continue
            # (done and modified after we finished, still New: someone reset it; the ledger
            # asks the ERP again)
            yield OrderRef(oid, number, row)

    def lookup(self, run: RunContext, number: str) -> OrderRef | None:
        """By Id, whatever its status; else by OrderNumber, among the orders the flow reads
        (the search from ``start`` in its statuses)."""
        resp = run.source.request(
            "GET", f"/api/Orders/{quote(number, safe='')}", ok_status=frozenset({404})
        )
        if resp.status_code != 404:
            order = parse_json(resp, f"{run.source.name} order")
            if isinstance(order, dict) and order.get("Id") not in (None, ""):
                oid = str(order["Id"])
                return OrderRef(oid, str(order.get("OrderNumber") or oid), order)
        return super().lookup(run, number)

    def fetch(self, ref: OrderRef) -> Exchange:
        """The search answer is the whole order: no call."""
        assert self.run is not None
        return row_exchange(
            self.run,
            ref,
            **{
                "order.number": ref.number,
                "order.pk": ref.pk,
                "order.modified": str(ref.summary.get("Modified")),
            },
        )

    def recorded(self, run: RunContext, doc: dict[str, Any]) -> Exchange:
        """A recorded Omnium order, as a search row."""
        oid = str(doc.get("Id", ""))
        self.run = run
        return self.fetch(OrderRef(oid, str(doc.get("OrderNumber") or oid), doc))

    def close(self) -> None:
        """Move the watermark past the longest run of done orders (nothing in a dry run)."""
        if self.run is not None:
            advance_watermark(
                self.run, self.listed, _instant, whole_instants=False, what="ModifiedFrom"
            )


class OmniumMarkStage(Stage):
    """``PatchOrder`` with the ERP reference in ``externalIds``, then ``UpdateStatus``."""

    name = "omnium_mark"
    allowed = {"status", "provider_name"}
    side_effects = True
    calls_out = True
    marks = True

    def __init__(self, status: str = "InProgress", provider_name: str = "ERP") -> None:
        self.status, self.provider_name = status, provider_name
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """The status to move to, the externalIds provider name."""
        return cls(opts.get("status", str, "InProgress"), opts.get("provider_name", str, "ERP"))

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    def _calls(self, ex: Exchange) -> list[tuple[str, str, Any]]:
        calls: list[tuple[str, str, Any]] = []
        ref = ex.attributes.get("erp.reference")
        if ref:
            body = {"externalIds": [{"providerName": self.provider_name, "id": ref}]}
            calls.append(("PATCH", f"/api/Orders/{ex.pk}/PatchOrder", body))
        calls.append(("POST", f"/api/Orders/{ex.pk}/UpdateStatus", {"status": self.status}))
        return calls

    def plan(self, ex: Exchange) -> None:
        """Dry run: the write-back calls."""
        assert self.run is not None
        for method, path, body in self._calls(ex):
            self.run.plan(ex, self.run.source, method, path, body)

    def process(self, ex: Exchange) -> None:
        """Write back; record `marked`."""
        run = self.run
        assert run is not None
        for method, path, body in self._calls(ex):
            run.source.request(method, path, json_body=body)
        ref = ex.attributes.get("erp.reference")
        run.ledger.apply(
            ex.track,
            Fact.MARKED,
            f"{self.status} on {run.source.name}; ERP reference {ref}",
            erp_ref=ref,
        )

    def is_marked(self, run: RunContext, pk: str, number: str) -> bool | None:
        """The order's Omnium status is the one this step writes (None: cannot be read)."""
        order = run.source.read_object(f"/api/Orders/{pk}")
        return None if order is None else order.get("Status") == self.status

"""read: unsent Omnitron orders, page by page, each assembled into one document.

Paging is by pk cursor (``pk__gt=<last pk>&ordering=pk``), never by offset: orders marked sent
during the run leave the result set, and offset paging over a shrinking set skips orders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from integrator.config.checks import Options
from integrator.connectors.bodies import parse_json
from integrator.connectors.redact import strip_channel_conf
from integrator.errors import FatalError, OrderError, PermanentError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, OrderRef, SourceStage, Stage
from integrator.stages.omnitron_shape import omnitron_samples

if TYPE_CHECKING:
    from integrator.connectors.http import Connector
    from integrator.pipeline.context import RunContext

__all__ = ["ReadStage"]

CANCELLED_STATUSES = frozenset({"50", "100"})


class ReadStage(SourceStage):
    """Lists unsent orders and fetches detail, items and discounts (each with its detail)."""

    name = "read"
    allowed = {
        "prefix",
        "list_path",
        "detail_path",
        "items_path",
        "item_detail_path",
        "discounts_path",
        "discount_detail_path",
        "page_size",
        "statuses",
        "channels",
        "cursor_param",
        "params",
    }

    def __init__(self, **o: Any) -> None:
        self.o = o
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Read paths, page size and filters."""

        def path(name: str, default: str) -> str:
            return opts.get(name, str, default)

        return cls(
            prefix=path("prefix", "/api/i1/"),
            list_path=path("list_path", "orders/"),
            detail_path=path("detail_path", "orders_integration/{pk}/detailed_integration/"),
            items_path=path("items_path", "order_items/"),
            item_detail_path=path("item_detail_path", "order_items/{pk}/detailed_integration/"),
            discounts_path=path("discounts_path", "discount_items/"),
            discount_detail_path=path(
                "discount_detail_path", "discount_items/{pk}/detailed_integration/"
            ),
            page_size=opts.get(
                "page_size",
                int,
                50,
                check=lambda v: None if 1 <= v <= 1000 else "expected 1 to 1000",
            ),
            statuses=[str(s) for s in opts.get("statuses", list, ["400"])],
            channels=[str(c) for c in opts.get("channels", list, [])],
            cursor_param=path("cursor_param", "pk__gt"),
            params=opts.get("params", dict, {}),
        )

    def _url(self, key: str, **fmt: Any) -> str:
        return str(self.o["prefix"]).rstrip("/") + "/" + str(self.o[key]).format(**fmt)

    def open(self, run: RunContext) -> None:
        """Keep the run for fetches."""
        self.run = run

    def _get(self, conn: Connector, url: str, params: dict[str, Any] | None = None) -> Any:
        resp = conn.request("GET", url, params=params)
        return parse_json(resp, conn.describe("GET", conn.url(url)), conn.name)

    def list_url(self) -> str:
        """The order list endpoint (``integrator reconcile`` reads it too)."""
        return self._url("list_path")

    @property
    def page_size(self) -> int:
        """Orders per list page."""
        return int(self.o["page_size"])

    def iter_orders(self, run: RunContext, only: str | None = None) -> Iterator[OrderRef]:
        """Yield every unsent, not cancelled order in pk order (``only``: that number).

        The first page's ``count`` (the rows the query matches) goes to the run's metrics as
        the size of the listing, unless ``only`` asks for one order (an event's)."""
        counted = only is not None
        only = only or run.only_order
        params: dict[str, Any] = {
            "is_send": "false",
            "ordering": "pk",
            "limit": self.o["page_size"],
            **self.o["params"],
        }
        if self.o["statuses"]:
            params["status__in"] = ",".join(self.o["statuses"])
        if self.o["channels"]:
            params["channel__in"] = ",".join(self.o["channels"])
        if only:
            params["number"] = only
        cursor: int | None = None
        oldest: dt.datetime | None = None
        url = self._url("list_path")
        while not run.stopping():  # a stop asked for while listing is seen between pages
            if cursor is not None:
                params[self.o["cursor_param"]] = cursor
            try:
                page = self._get(run.source, url, params)
            except OrderError as exc:
                raise FatalError(f"reading the order list failed: {exc}") from None
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise FatalError(
                    f"order list from {run.source.name}: expected "
                    "{'results': [...]} in the answer"
                )
            count = page.get("count")
            if not counted and isinstance(count, int) and not isinstance(count, bool):
                run.metrics.listed(run.flow.name, max(count, 0))
            counted = True
            before = cursor
            for i, row in enumerate(results):
                pk = _int_pk(row)
                if pk is not None:  # the cursor moves on every row, usable or not
                    if before is not None and pk <= before:
                        raise FatalError(
                            f"order list from {run.source.name}: asked for pks after {before} "
                            f"({self.o['cursor_param']}={before}), it answered pk {pk} again: "
                            "the server ignores the cursor parameter; set read.cursor_param to "
                            "the filter it takes. The listing stopped here (nothing was sent "
                            "twice)"
                        )
                    cursor = max(cursor or 0, pk)
                ref = self._ref(run, row, i)
                if ref is None:
                    continue
                if only and ref.number != only:
                    continue
                if str(row.get("status")) in CANCELLED_STATUSES:
                    continue
                placed = _when(row.get("date_placed") or row.get("created_date"))
                if placed is not None and (oldest is None or placed < oldest):
                    oldest = placed
                yield ref
            if len(results) < int(self.o["page_size"]) or not page.get("next"):
                if not only:  # the whole list was read: no unsent order left is an age of 0
                    age = (dt.datetime.now(dt.UTC) - oldest).total_seconds() if oldest else 0.0
                    run.oldest_unsent_seconds = max(age, 0.0)
                    run.metrics.oldest_unsent(run.flow.name, max(age, 0.0))
                return
            if cursor == before:
                raise FatalError(
                    f"order list from {run.source.name}: a full page of {len(results)} rows "
                    "with no integer 'pk' to page on; the listing stopped here"
                )

    def _ref(self, run: RunContext, row: Any, i: int) -> OrderRef | None:
        """An OrderRef, or None (with an event) for a row without a usable pk/number."""
        if isinstance(row, dict):
            pk, number = row.get("pk"), row.get("number")
            if isinstance(pk, int) and not isinstance(pk, bool) and number not in (None, ""):
                return OrderRef(str(pk), str(number), row)
        run.event(
            None,
            "invalid",
            f"order list row {i} skipped: expected an integer 'pk' and "
            f"a 'number', got {str(row)[:120]}",
        )
        return None

    def lookup(self, run: RunContext, number: str) -> OrderRef | None:
        """Order ``number`` whatever its state (sent, cancelled, any status or channel): the
        list filtered by number alone."""
        url = self._url("list_path")
        page = self._get(run.source, url, {"number": number, "limit": self.o["page_size"]})
        results = page.get("results") if isinstance(page, dict) else None
        if not isinstance(results, list):
            raise PermanentError(
                f"order list from {run.source.name}: expected {{'results': [...]}} in the answer",
                stage="read",
            )
        for i, row in enumerate(results):  # a server that ignores the filter lists others
            ref = self._ref(run, row, i)
            if ref is not None and ref.number == number:
                return ref
        return None

    def samples(self) -> list[Any]:
        """Omnitron's assembled order: the sandbox's and the API reference's shapes."""
        return list(omnitron_samples())

    def recorded(self, run: RunContext, doc: dict[str, Any]) -> Exchange:
        """A recorded order document, masked as ``fetch`` masks it."""
        doc = strip_channel_conf(doc, run.redactor)
        return super().recorded(run, doc)

    def fetch(self, ref: OrderRef) -> Exchange:
        """The order document: detail + orderitem_set + discountitem_set, channel.conf masked."""
        run = self.run
        assert run is not None  # set by open()
        conn = run.source
        doc, items, discounts = run.gather(
            [
                partial(self._get, conn, self._url("detail_path", pk=ref.pk)),
                partial(self._list, conn, self._url("items_path"), ref.pk),
                partial(self._list, conn, self._url("discounts_path"), ref.pk),
            ]
        )
        details = run.gather(
            [partial(self._get, conn, self._url("item_detail_path", pk=self._pk(i))) for i in items]
            + [
                partial(self._get, conn, self._url("discount_detail_path", pk=self._pk(d)))
                for d in discounts
            ]
        )
        if (
            not isinstance(doc, dict)
            or str(doc.get("pk")) != ref.pk
            or str(doc.get("number", ref.number)) != ref.number
        ):
            raise PermanentError(
                f"order {ref.number}: the detail answer is not the order "
                f"(expected an object with pk {ref.pk} and number {ref.number})",
                stage="read",
            )
        doc["orderitem_set"] = details[: len(items)]
        doc["discountitem_set"] = details[len(items) :]
        strip_channel_conf(doc, run.redactor)
        return Exchange(
            pk=ref.pk,
            number=ref.number,
            order=doc,
            attributes={
                "order.number": ref.number,
                "order.pk": ref.pk,
                "flow.name": run.flow.name,
                "run.id": str(run.run_id),
            },
        )

    def _list(self, conn: Connector, url: str, order_pk: str) -> list[Any]:
        params: dict[str, Any] | None = {"order": order_pk, "limit": 100}
        out: list[Any] = []
        next_url: str | None = url
        visited: set[str] = set()
        while next_url:
            page = self._get(conn, next_url, params)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise PermanentError(
                    f"{conn.describe('GET', conn.url(url))}: expected {{'results': [...]}}",
                    stage="read",
                )
            out.extend(page["results"])
            visited.add(conn.url(next_url) + (f"?{urlencode(params)}" if params else ""))
            next_url, params = page.get("next"), None
            if next_url is not None and conn.url(str(next_url)) in visited:
                raise PermanentError(
                    f"{conn.describe('GET', conn.url(url))}: its 'next' link points to a page "
                    "already read in this listing (the server's paging loops); the listing "
                    "stopped here",
                    stage="read",
                )
        return out

    @staticmethod
    def _pk(row: Any) -> Any:
        if isinstance(row, dict) and "pk" in row:
            return row["pk"]
        raise PermanentError(f"an item row has no 'pk': {str(row)[:80]}", stage="read")


def _int_pk(row: Any) -> int | None:
    """A row's integer pk (None when it has none)."""
    pk = row.get("pk") if isinstance(row, dict) else None
    return pk if isinstance(pk, int) and not isinstance(pk, bool) else None


def _when(value: Any) -> dt.datetime | None:
    """An ISO timestamp as an aware datetime (UTC when it names no zone), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)

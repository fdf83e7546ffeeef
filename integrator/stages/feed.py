"""erp_feed: a source that polls an ERP change feed (status, stock, returns) by watermark.

Each row of the feed is one change; it goes through the flow as an "order" whose number is the
change's id, so the ledger makes each change land in the OMS exactly once. The feed is read
with ``<watermark_param>=<watermark>`` (``modified_date__gt`` style: strictly after), oldest
first, following ``next`` links (or ``offset``). Timestamps are the ERP's own, often a naive
local time: ``timezone`` says which, so that ``start`` (an ISO time) is turned into the ERP's
clock; the watermark is kept in the ERP's own text and sent back as it came.

The watermark moves, when the run ends, to the last instant whose changes were all done (with
"strictly after", an instant is passed only whole); a change that fails holds it, and the next
run reads from there, skipping the changes already done.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrator.config.checks import Options
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, OrderRef, SourceStage, Stage
from integrator.stages.watermark import (
    Listed,
    advance_watermark,
    linked_pages,
    parse_time,
    row_exchange,
    time_check,
    yaml_time,
)

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["FeedStage"]

_ERP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _tz_check(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "expected an IANA time zone such as Europe/Istanbul or UTC"
    return None


class FeedStage(SourceStage):
    """Changes after the watermark, oldest first; each a unit of the ledger."""

    name = "erp_feed"
    allowed = {
        "path",
        "watermark_param",
        "modified_field",
        "id_field",
        "timezone",
        "page_size",
        "start",
    }

    def __init__(self, o: dict[str, Any]) -> None:
        self.o = o
        self.run: RunContext | None = None
        self.listed: list[Listed] = []

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Feed path, watermark parameter, field names, the ERP's time zone, paging, start."""
        yaml_time(opts, "start")
        return cls(
            {
                "path": opts.get("path", str, "", required=True),
                "watermark_param": opts.get("watermark_param", str, "modified_date__gt"),
                "modified_field": opts.get("modified_field", str, "modified_date"),
                "id_field": opts.get("id_field", str, "id"),
                "timezone": opts.get("timezone", str, "UTC", check=_tz_check),
                "page_size": opts.get(
                    "page_size", int, 50, check=lambda v: None if v >= 1 else "expected 1 or more"
                ),
                "start": opts.get("start", str, "1970-01-01T00:00:00Z", check=time_check),
            }
        )

    def open(self, run: RunContext) -> None:
        """Keep the run; nothing listed yet."""
        self.run = run
        self.listed = []

    def _start(self) -> str:
        """``start`` on the ERP's clock, in its format."""
        t = parse_time(self.o["start"])
        zone = ZoneInfo(self.o["timezone"])
        t = t.astimezone(zone) if t.tzinfo else t
        return t.replace(tzinfo=None).strftime(_ERP_FORMAT)

    def iter_orders(self, run: RunContext, only: str | None = None) -> Iterator[OrderRef]:
        """Every change after the watermark (``only``: that change id)."""
        only = only or run.only_order
        since = run.watermark() or self._start()
        o = self.o
        params = {o["watermark_param"]: since, "limit": o["page_size"]}
        for rows in linked_pages(
            run.source, o["path"], params, "reading the change feed failed",
            page_size=int(o["page_size"]),
        ):  # fmt: skip
            yield from self._refs(run, rows, only)

    def _refs(self, run: RunContext, rows: list[Any], only: str | None) -> Iterator[OrderRef]:
        o = self.o
        good = []
        for row in rows:
            cid = row.get(o["id_field"]) if isinstance(row, dict) else None
            when = row.get(o["modified_field"]) if isinstance(row, dict) else None
            if cid in (None, "") or not isinstance(when, str) or time_check(when):
                run.event(None, "invalid", f"change skipped: no id or time in {str(row)[:120]}")
                continue
            good.append((row, str(cid), when))
        states = run.states([c for _, c, _ in good])
        for row, cid, when in good:
            if only and cid != only:
                continue
            if not only:  # a run of one change moves no watermark
                self.listed.append((parse_time(when).replace(tzinfo=None), cid, when))
            if states.get(cid) == "done":
                continue
            yield OrderRef(cid, cid, row)

    def recorded(self, run: RunContext, doc: dict[str, Any]) -> Exchange:
        """A recorded feed row."""
        self.run = run
        cid = str(doc.get(self.o["id_field"], ""))
        return self.fetch(OrderRef(cid, cid, doc))

    def fetch(self, ref: OrderRef) -> Exchange:
        """The feed row is the whole change."""
        assert self.run is not None
        row = ref.summary
        return row_exchange(
            self.run,
            ref,
            **{
                "change.id": ref.pk,
                "change.modified": str(row.get(self.o["modified_field"])),
                "order.number": str(row.get("order_number", "")),
            },
        )

    def close(self) -> None:
        """Move the watermark to the last instant whose changes are all done."""
        if self.run is not None:
            advance_watermark(
                self.run,
                self.listed,
                lambda t: parse_time(t).replace(tzinfo=None),
                whole_instants=True,
                what=self.o["watermark_param"],
            )

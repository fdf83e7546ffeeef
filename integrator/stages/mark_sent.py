"""mark_sent: ERP references onto Omnitron's order items, then ``is_send: true`` on the order.

Items first: once the order is marked sent it is never read again, so references must land
before it. Both PATCHes are idempotent and are simply repeated after a crash.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.stages.check_response import (
    DEFAULTS,
    default_mapping_data,
    placeholder_mapping_data,
)
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["MarkSentStage"]


class MarkSentStage(Stage):
    """PATCH order items (extra_field merges), then PATCH the order."""

    name = "mark_sent"
    allowed = {"prefix", "order_path", "item_path"}
    side_effects = True
    calls_out = True
    marks = True

    def __init__(self, prefix: str, order_path: str, item_path: str) -> None:
        self.prefix, self.order_path, self.item_path = prefix, order_path, item_path
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Paths of the two PATCH endpoints."""
        return cls(
            opts.get("prefix", str, "/api/v1/"),
            opts.get("order_path", str, "orders/{pk}/"),
            opts.get("item_path", str, "order_items/{pk}/"),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    def _url(self, template: str, pk: Any) -> str:
        return self.prefix.rstrip("/") + "/" + template.format(pk=pk)

    def _patches(self, ex: Exchange, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(path, body) of every PATCH: the items with ERP references first, the order last."""
        calls = [
            (self._url(self.item_path, item["pk"]), {k: v for k, v in item.items() if k != "pk"})
            for item in data.get("order_items", [])
            if isinstance(item, dict) and any(k != "pk" for k in item)
        ]
        return [*calls, (self._url(self.order_path, ex.pk), {"is_send": True})]

    def plan(self, ex: Exchange) -> None:
        """Dry run or trace: the item PATCHes (with placeholders where only the ERP's answer
        can give the value) and the order PATCH."""
        run = self.run
        assert run is not None  # set by open()
        data = ex.mapping_data
        if data is None:  # no check_response stage in the flow: the built-in's shape
            data = placeholder_mapping_data(ex.order, DEFAULTS)
        for path, body in self._patches(ex, data):
            run.plan(ex, run.source, "PATCH", path, body)

    def process(self, ex: Exchange) -> None:
        """Send the PATCHes; report the mark."""
        run = self.run
        assert run is not None  # set by open()
        data = ex.mapping_data
        if data is None:  # no check_response stage in the flow: use the built-in
            data = ex.mapping_data = default_mapping_data(ex.response, DEFAULTS)
        conn = run.source
        *items, (order_path, order_body) = self._patches(ex, data)
        run.gather([partial(conn.request, "PATCH", path, json_body=body) for path, body in items])
        conn.request("PATCH", order_path, json_body=order_body)
        ref = ex.attributes.get("erp.reference")
        run.ledger.apply(
            ex.track,
            Fact.MARKED,
            f"is_send set on {conn.name}; {len(items)} item(s) updated",
            erp_ref=ref,
        )

    def is_marked(self, run: RunContext, pk: str, number: str) -> bool | None:
        """Omnitron's ``is_send`` on the order now (None when it cannot be read)."""
        order = run.source.read_object(self._url(self.order_path, pk))
        if order is None or str(order.get("number", number)) != number:
            return None
        return order.get("is_send") is True

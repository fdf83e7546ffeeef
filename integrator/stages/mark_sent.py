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
from integrator.stages.check_response import DEFAULTS, default_mapping_data

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["MarkSentStage"]


class MarkSentStage(Stage):
    """PATCH order items (extra_field merges), then PATCH the order."""

    name = "mark_sent"
    allowed = {"prefix", "order_path", "item_path"}
    side_effects = True

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

    def plan(self, ex: Exchange) -> None:
        """Dry run: the order PATCH (item references need the ERP's real answer)."""
        assert self.run is not None  # set by open()
        self.run.plan(
            ex, self.run.source, "PATCH", self._url(self.order_path, ex.pk), {"is_send": True}
        )

    def process(self, ex: Exchange) -> None:
        """Send the PATCHes; record `marked`."""
        run = self.run
        assert run is not None  # set by open()
        data = ex.mapping_data
        if data is None:  # no check_response stage in the flow: use the built-in
            data = ex.mapping_data = default_mapping_data(ex.response, DEFAULTS)
        conn = run.source
        patches = [
            partial(
                conn.request,
                "PATCH",
                self._url(self.item_path, item["pk"]),
                json_body={k: v for k, v in item.items() if k != "pk"},
            )
            for item in data.get("order_items", [])
            if any(k != "pk" for k in item)
        ]
        run.gather(patches)
        conn.request("PATCH", self._url(self.order_path, ex.pk), json_body={"is_send": True})
        ref = ex.attributes.get("erp.reference")
        run.journal(
            ex, "marked", f"is_send set on {conn.name}; {len(patches)} item(s) updated", erp_ref=ref
        )

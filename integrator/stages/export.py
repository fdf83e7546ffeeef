"""export: Omnium's ExportOrder step. The order goes to the exporter named by ``Connector``.

The connector is chosen as Omnium does (``ConnectorId`` → enabled for the order's market → for
its market group → the global one with that ``Name``). ``StopOnError: false`` (default): a
failure is an ``OrderExportError`` warning and the order goes on; ``true``: the order fails,
with ``ErrorStatus`` recorded on it. In a flow with ``test_mode: true`` exports are skipped and
reported as success. Omnitron has no order status to write ``ErrorStatus`` back to: it is kept
in the store (event and the ``order.error_status`` attribute).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator.config.checks import Options
from integrator.connectors.http import Connector
from integrator.connectors.resolve import resolve_connector
from integrator.errors import OrderError, PermanentError
from integrator.exporters import find_exporter
from integrator.mapping.paths import select
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["ExportStage"]


class ExportStage(Stage):
    """One destination; several export steps run in flow order."""

    name = "export"
    allowed = {"Connector", "ConnectorId", "StopOnError", "ErrorStatus", "RunAfterOrderIsSaved"}
    side_effects = True

    def __init__(
        self, connector: str, connector_id: str, stop_on_error: bool, error_status: str
    ) -> None:
        self.connector, self.connector_id = connector, connector_id
        self.stop_on_error, self.error_status = stop_on_error, error_status
        self.run: RunContext | None = None
        self._connectors: dict[str, Connector] = {}

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Connector name (the exporter), optional ConnectorId, StopOnError, ErrorStatus."""
        name = opts.get("Connector", str, "", required=True)
        if name and find_exporter(name) is None:
            ctx.warnings.append(
                f"{opts.doc.file} [{opts.sub('Connector')}]: no exporter named {name!r} (built "
                "in: Webhook; others register in the integrator.exporters entry points): the "
                "step will fail as 'exporter not found'"
            )
        opts.get("RunAfterOrderIsSaved", bool, False)  # the order is saved before every step
        return cls(
            name,
            opts.get("ConnectorId", str, ""),
            opts.get("StopOnError", bool, False),
            opts.get("ErrorStatus", str, ""),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run; connectors are built per resolved config and reused."""
        self.run = run

    def close(self) -> None:
        """Close the connectors this step opened."""
        for conn in self._connectors.values():
            conn.close()
        self._connectors.clear()

    def _connector(self, ex: Exchange) -> Connector | None:
        run = self.run
        assert run is not None
        market = select(run.flow.market_path, ex.order)
        market = "" if market in (None, "") else str(market)
        cfg = resolve_connector(
            run.app.connectors,
            self.connector,
            connector_id=self.connector_id,
            market=market,
            market_groups=run.app.groups_of(market) if market else (),
        )
        if cfg is None:
            return None
        key = f"{cfg.name}/{cfg.connector_id}"
        if key not in self._connectors:
            self._connectors[key] = Connector(cfg, run.redactor, metrics=run.metrics)
        return self._connectors[key]

    def plan(self, ex: Exchange) -> None:
        """Dry run: the export it would make."""
        assert self.run is not None
        conn = self._connector(ex)
        if conn is not None:
            self.run.plan(ex, conn, "EXPORT", self.connector, None)

    def process(self, ex: Exchange) -> None:
        """Export, or record why not."""
        run = self.run
        assert run is not None
        if run.flow.test_mode:
            run.event(ex, "Exported", f"{self.connector}: skipped (test mode)")
            return
        try:
            conn = self._connector(ex)
            exporter = find_exporter(self.connector)
            if conn is None or exporter is None:
                raise PermanentError(f"exporter not found: {self.connector!r}")
            note = exporter(conn).export(ex.order)
        except OrderError as exc:
            self._failed(ex, exc)
            return
        ex.attributes.pop(f"export.{self.connector}.error", None)
        run.event(ex, "Exported", f"{self.connector}: {note}")

    def _failed(self, ex: Exchange, exc: OrderError) -> None:
        run = self.run
        assert run is not None
        msg = f"{self.connector}: {exc}"
        ex.attributes[f"export.{self.connector}.error"] = msg
        if not self.stop_on_error:
            run.event(ex, "OrderExportError", f"warning: {msg}")
            return
        if self.error_status:
            ex.attributes["order.error_status"] = self.error_status
        run.event(
            ex,
            "OrderExportError",
            f"error: {msg}" + (f"; status {self.error_status}" if self.error_status else ""),
        )
        raise PermanentError(f"export {msg}", stage=self.name)

"""export: Omnium's ExportOrder step. The order goes to the exporter named by ``Connector``.

The connector is chosen as Omnium does (``ConnectorId`` → enabled for the order's market → for
its market group → the global one with that ``Name``). ``StopOnError: false`` (default): a
failure is an ``OrderExportError`` warning and the order goes on; ``true``: the order fails,
with ``ErrorStatus`` recorded on it. In a flow with ``test_mode: true`` exports are skipped and
reported as success. Omnitron has no order status to write ``ErrorStatus`` back to: it is kept
in the store (event and the ``order.error_status`` attribute).

``RunAfterOrderIsSaved: true`` on a queue exporter (its consumers read the order back by
``EntityId``): the step first reads the order from the source at ``SavedCheckPath`` (default
Omnitron's ``/api/i1/orders/{pk}/``) and sends the message only when that answers 2xx.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.config.model import ConnectorConfig
from integrator.connectors.resolve import resolve_connector
from integrator.errors import ConfigIssue, OrderError, PermanentError
from integrator.exporters import BUILTIN, Exporter, find_exporter
from integrator.mapping.paths import select
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.state.entries import Delivery
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["ExportStage"]


def _check_connectors(
    exporter: type[Exporter],
    name: str,
    connector_id: str,
    ctx: BuildContext,
    issues: list[ConfigIssue],
) -> None:
    """Every connector the step may resolve to, checked by its exporter (no client library is
    imported): a problem is reported once, on config.yaml's key and line, at validate and at
    the start of a run, not at the first order."""
    for cfg in ctx.app.connectors:
        if (cfg.connector_id != connector_id) if connector_id else (cfg.name != name):
            continue  # an explicit ConnectorId wins over the Name, as resolve_connector does
        for problem in exporter.check(cfg):
            issue = cfg.issue(problem.option, f"{exporter.name or name}: {problem.message}")
            if issue not in issues:  # several steps or flows may name one connector
                issues.append(issue)


class ExportStage(Stage):
    """One destination; several export steps run in flow order."""

    name = "export"
    allowed = {
        "Connector",
        "ConnectorId",
        "StopOnError",
        "ErrorStatus",
        "RunAfterOrderIsSaved",
        "SavedCheckPath",
    }
    side_effects = True
    calls_out = True
    delivers = True

    def __init__(
        self,
        connector: str,
        connector_id: str,
        stop_on_error: bool,
        error_status: str,
        after_saved: bool = False,
        saved_check_path: str = "/api/i1/orders/{pk}/",
    ) -> None:
        self.connector, self.connector_id = connector, connector_id
        self.stop_on_error, self.error_status = stop_on_error, error_status
        self.after_saved, self.saved_check_path = after_saved, saved_check_path
        self.run: RunContext | None = None
        self._exporters: dict[str, Exporter] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Connector name (the exporter), optional ConnectorId, StopOnError, ErrorStatus."""
        name = opts.get("Connector", str, "", required=True)
        connector_id = opts.get("ConnectorId", str, "")
        exporter = find_exporter(name) if name else None
        if name and exporter is None:
            ctx.warnings.append(
                f"{opts.doc.file} [{opts.sub('Connector')}]: no exporter named {name!r} (built "
                f"in: {', '.join(BUILTIN)}; others register in the integrator.exporters entry "
                "points): the step will fail as 'exporter not found'"
            )
        if exporter is not None:
            _check_connectors(exporter, name, connector_id, ctx, opts.issues)
        return cls(
            name,
            connector_id,
            opts.get("StopOnError", bool, False),
            opts.get("ErrorStatus", str, ""),
            opts.get("RunAfterOrderIsSaved", bool, False),
            opts.get(
                "SavedCheckPath",
                str,
                "/api/i1/orders/{pk}/",
                check=lambda v: None if "{pk}" in v else "must contain {pk}",
            ),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run; connectors are built per resolved config and reused."""
        self.run = run

    def close(self) -> None:
        """Close the exporters (and their connections) this step opened."""
        with self._lock:
            exporters, self._exporters = list(self._exporters.values()), {}
        for exporter in exporters:
            try:
                exporter.close()
            finally:
                exporter.connector.close()

    def _market(self, ex: Exchange) -> str:
        assert self.run is not None
        market = select(self.run.flow.market_path, ex.order)
        return "" if market in (None, "") else str(market)

    def _config(self, market: str) -> ConnectorConfig | None:
        """The connector an order of ``market`` goes to, as Omnium resolves it."""
        run = self.run
        assert run is not None
        return resolve_connector(
            run.app.connectors,
            self.connector,
            connector_id=self.connector_id,
            market=market,
            market_groups=run.app.groups_of(market) if market else (),
        )

    def _exporter(self, cfg: ConnectorConfig | None) -> Exporter:
        """The exporter for this connector: built once per run, then shared."""
        run = self.run
        assert run is not None
        cls = find_exporter(self.connector)
        if cfg is None or cls is None:
            raise PermanentError(f"exporter not found: {self.connector!r}")
        key = f"{cfg.name}/{cfg.connector_id}"
        with self._lock:
            exporter = self._exporters.get(key)
            if exporter is None:
                from integrator.connectors.http import Connector

                conn = Connector(cfg, run.redactor, metrics=run.metrics)
                try:
                    exporter = cls(conn)
                except BaseException:
                    conn.close()
                    raise
                self._exporters[key] = exporter
        return exporter

    def plan(self, ex: Exchange) -> None:
        """Dry run or trace: the export it would make, to which connector. The exporter is not
        built: some clients connect as they are made (Kafka's producer)."""
        run = self.run
        assert run is not None
        cfg = self._config(self._market(ex))
        if cfg is not None:
            where = cfg.host or f"{self.connector} (connection string)"
            run.plan_to(ex, cfg.name, "EXPORT", where, {"connector_id": cfg.connector_id})

    def process(self, ex: Exchange) -> None:
        """Export, or record why not."""
        run = self.run
        assert run is not None
        if run.flow.test_mode:
            run.event(ex, "Exported", f"{self.connector}: skipped (test mode)")
            return
        market = self._market(ex)
        cfg = self._config(market)
        if cfg is not None and run.ledger.exported(ex.number, cfg.name, cfg.connector_id):
            # an earlier run exported it to this connector; a retry of the order must not
            ex.attributes.pop(f"export.{self.connector}.error", None)
            return
        try:
            exporter = self._exporter(cfg)
            if self.after_saved and exporter.lightweight:
                self._confirm_saved(ex)
            note = exporter.export(ex.order, market)
        except OrderError as exc:
            self._failed(ex, exc)
            return
        ex.attributes.pop(f"export.{self.connector}.error", None)
        assert cfg is not None  # _exporter refuses None
        run.ledger.apply(
            ex.track,
            Fact.EXPORTED,
            f"{self.connector}: {note}",
            delivery=Delivery("export", self.connector, cfg.connector_id, note),
        )

    def _confirm_saved(self, ex: Exchange) -> None:
        """The source serves the order the message names (its consumers will read it)."""
        run = self.run
        assert run is not None
        pk: Any = ex.order.get("pk") or ex.order.get("id") or ex.order.get("Id")
        path = self.saved_check_path.replace("{pk}", str(pk))
        try:
            run.source.request("GET", path)
        except OrderError as exc:
            raise type(exc)(
                f"the order is not readable from the source yet ({exc}); no message sent",
                status=exc.status,
            ) from None

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

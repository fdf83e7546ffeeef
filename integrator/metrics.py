"""What a run reports to operators: a no-op by default, Prometheus in the daemon."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "NullMetrics", "PrometheusMetrics"]


class Metrics:
    """The hooks the runner, the stages and the connectors call."""

    def order(self, flow: str, outcome: str) -> None:
        """An order ended: ok, failed or skipped."""

    def stage(self, flow: str, stage: str, seconds: float) -> None:
        """A stage took ``seconds`` for one order."""

    def http_status(self, connector: str, status: int) -> None:
        """A connector got an answer with ``status``."""

    def run_started(self, flow: str, run_id: int) -> None:
        """A run of ``flow`` took the flow's lock and was recorded as ``run_id`` (the live
        view's start; nothing in Prometheus)."""

    def run(self, flow: str, status: str) -> None:
        """A run ended: ok, partial, failed or skipped (another holds the flow's lock)."""

    def oldest_unsent(self, flow: str, age_seconds: float) -> None:
        """The oldest unsent order a whole read of the source saw is this old (0: it saw
        none, the backlog is gone)."""

    def listed(self, flow: str, count: int) -> None:
        """The source says its listing of this run holds ``count`` orders (the progress bar's
        total); called once, when it says so."""

    def journal_states(self, flow: str, counts: dict[str, int]) -> None:
        """How many orders of ``flow`` are in each journal state."""

    def reconciled(self, flow: str, counts: dict[str, int]) -> None:
        """What the last reconciliation of ``flow`` found, per kind of difference."""

    def alarms(self, states: list[tuple[str, str, bool]]) -> None:
        """Every alarm's state now: (flow, alarm, firing); alarms left out are gone."""


NullMetrics = Metrics


class PrometheusMetrics(Metrics):
    """The daemon's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.orders = Counter(
            "integrator_orders", "Orders by outcome", ["flow", "outcome"], registry=r
        )
        self.stage_seconds = Histogram(
            "integrator_stage_seconds",
            "Time per order in each stage",
            ["flow", "stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.http = Counter(
            "integrator_http_responses",
            "HTTP answers by connector and status code",
            ["connector", "status"],
            registry=r,
        )
        self.runs = Counter("integrator_runs", "Runs by outcome", ["flow", "status"], registry=r)
        self.last_success = Gauge(
            "integrator_last_success_timestamp_seconds",
            "When the flow last ended a run without failures",
            ["flow"],
            registry=r,
        )
        self.oldest = Gauge(
            "integrator_oldest_unsent_order_age_seconds",
            "Age of the oldest unsent order the last read of the source saw (0: none left)",
            ["flow"],
            registry=r,
        )
        self.quarantined = Gauge(
            "integrator_quarantined_orders", "Orders in quarantine", ["flow"], registry=r
        )
        self.up = Gauge("integrator_scheduler_up", "1 while the scheduler runs", registry=r)
        self.reconcile = Gauge(
            "integrator_reconcile_differences",
            "Orders the OMS and the ERP disagree about, at the last reconciliation",
            ["flow", "kind"],
            registry=r,
        )
        self.reconcile_time = Gauge(
            "integrator_reconcile_timestamp_seconds",
            "When the flow was last reconciled",
            ["flow"],
            registry=r,
        )

        self.alarm_firing = Gauge(
            "integrator_alarm_firing",
            "1 while the flow's alarm fires, 0 when it is ok (as the store holds it)",
            ["flow", "alarm"],
            registry=r,
        )

    def order(self, flow: str, outcome: str) -> None:
        """Count an order."""
        self.orders.labels(flow, outcome).inc()

    def stage(self, flow: str, stage: str, seconds: float) -> None:
        """Observe a stage's time."""
        self.stage_seconds.labels(flow, stage).observe(seconds)

    def http_status(self, connector: str, status: int) -> None:
        """Count an answer."""
        self.http.labels(connector, str(status)).inc()

    def run(self, flow: str, status: str) -> None:
        """Count a run; remember the last success."""
        self.runs.labels(flow, status).inc()
        if status == "ok":
            self.last_success.labels(flow).set(time.time())

    def oldest_unsent(self, flow: str, age_seconds: float) -> None:
        """Set the age gauge."""
        self.oldest.labels(flow).set(age_seconds)

    def journal_states(self, flow: str, counts: dict[str, int]) -> None:
        """Set the quarantine gauge."""
        self.quarantined.labels(flow).set(counts.get("quarantined", 0))

    def reconciled(self, flow: str, counts: dict[str, int]) -> None:
        """Set the reconciliation gauges."""
        for kind, n in counts.items():
            self.reconcile.labels(flow, kind).set(n)
        self.reconcile_time.labels(flow).set(time.time())

    def alarms(self, states: list[tuple[str, str, bool]]) -> None:
        """Set the alarm gauges; drop those of alarms no longer there."""
        self.alarm_firing.clear()
        for flow, alarm, firing in states:
            self.alarm_firing.labels(flow, alarm).set(int(firing))

    def render(self) -> bytes:
        """The Prometheus text format."""
        return bytes(generate_latest(self.registry))

"""What a run shares with its stages: connectors, the ledger, the run log, dry-run output."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any, TypeVar

import structlog

from integrator.config.model import AppConfig, FlowConfig
from integrator.connectors.http import Connector
from integrator.connectors.redact import Redactor
from integrator.mapping.expr import PLANNED, Scope
from integrator.metrics import Metrics
from integrator.pipeline.breaker import CircuitBreaker
from integrator.pipeline.exchange import Exchange
from integrator.scripting.pool import ScriptPool
from integrator.state.ledger import Ledger
from integrator.state.store import Store

__all__ = ["Mode", "PlannedRequest", "RunContext", "stage_scope"]

T = TypeVar("T")

LOG_FLUSH_SECONDS = 0.5


class Mode(Enum):
    """What a run may do."""

    RUN = "run"  # everything
    DRY_RUN = "dry run"  # reads and read-only calls (query_check); nothing with side effects
    TRACE = "trace"  # recorded orders and answers: nothing calls out, nothing is written


log = structlog.get_logger("integrator.run")


@dataclass(frozen=True)
class PlannedRequest:
    """A request a dry run would have sent."""

    order: str
    connector: str
    method: str
    url: str
    body: Any


def stage_scope(
    flow: FlowConfig,
    connector: Connector,
    order: Any,
    attributes: dict[str, str],
    data: Any,
    *,
    trace: bool = False,
) -> Scope:
    """What the ``${…}`` expressions of ``flow``'s stages calling ``connector`` read: the
    order, its attributes, the flow's constants, the connector's fields, the payload
    (``data``) and the login's answer (in a trace, where nothing logs in, a note)."""
    login: Any = PLANNED if trace else connector.login_answer
    roots = {"vars": flow.vars, "connector": connector.fields, "data": data, "login": login}
    return Scope(order, attributes, roots)


@dataclass
class RunContext:
    """One run of one flow."""

    app: AppConfig
    flow: FlowConfig
    store: Store | None  # None in trace mode: nothing is read or written
    redactor: Redactor
    source: Connector
    target: Connector
    ledger: Ledger
    run_id: int = 0
    mode: Mode = Mode.RUN
    only_order: str | None = None
    fetch_pool: ThreadPoolExecutor | None = None
    scripts: ScriptPool = field(default_factory=ScriptPool)  # workers start on first call
    metrics: Metrics = field(default_factory=Metrics)
    stop: threading.Event | None = None  # set: take no new order (a signal, the daemon stops)
    replay: bool = False  # `integrator replay`: quarantine and backoff do not hold the order
    replay_by: str = "hand"  # who asked for the replay (recorded on the order's event)
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker({}))
    # Trace mode: the write's answer (recorded, or the sandbox's shape) and its status code.
    trace_answer: Callable[[Exchange], tuple[Any, int]] | None = None
    planned: list[PlannedRequest] = field(default_factory=list)
    log_path: Path | None = None
    # the oldest unsent order's age, when the source read its whole list (stored on the run)
    oldest_unsent_seconds: float | None = None
    _log_file: IO[str] | None = None
    _log_lock: threading.Lock = field(default_factory=threading.Lock)
    _log_flushed: float = 0.0

    def gather(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run ``calls`` concurrently and return their results in order.

        The first runs in the calling thread (it would only wait otherwise), the others in the
        run's fetch pool. Every call finishes before the first exception is raised.
        """
        if not calls:
            return []
        assert self.fetch_pool is not None  # set by the runner
        futures = [self.fetch_pool.submit(c) for c in calls[1:]]
        first: list[T] = []
        error: BaseException | None = None
        try:
            first.append(calls[0]())
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others end
            error = exc
        rest: list[T] = []
        for f in futures:
            try:
                rest.append(f.result())
            except BaseException as exc:  # noqa: BLE001
                error = error or exc
        if error is not None:
            raise error
        return first + rest

    def scope(self, ex: Exchange, connector: Connector) -> Scope:
        """What the ``${…}`` expressions of a stage calling ``connector`` read for ``ex``: the
        order, its attributes, the flow's constants, the connector's fields, the payload
        (``data``) and the login's answer (in a trace, where nothing logs in, a note)."""
        login: Any = PLANNED if self.mode is Mode.TRACE else connector.login_answer
        return Scope(
            ex.order,
            ex.attributes,
            {
                "vars": self.flow.vars,
                "connector": connector.fields,
                "data": ex.data,
                "login": login,
            },
        )

    # ------------------------------------------------------------- ledger
    def event(self, ex: Exchange | None, label: str, message: str) -> None:
        """A note on the order (or the run) that changes no state."""
        self.ledger.note(ex.number if ex else None, label, message)

    def states(self, numbers: Iterable[str]) -> dict[str, str]:
        """Journal states of these orders (sources skip the done ones at listing)."""
        if self.store is None:
            return {}
        return self.store.journal.states(self.flow.name, numbers)

    def done_at(self, numbers: Iterable[str]) -> dict[str, dt.datetime]:
        """When these orders were completed (only those that are done)."""
        if self.store is None:
            return {}
        return self.store.journal.done_at(self.flow.name, numbers)

    def watermark(self) -> str | None:
        """The flow's delta-polling watermark."""
        return None if self.store is None else self.store.watermarks.get(self.flow.name)

    def set_watermark(self, value: str) -> None:
        """Move the flow's watermark (never in a dry run or a trace)."""
        if self.store is not None and not self.dry_run:
            self.store.watermarks.set(self.flow.name, value)

    def flush(self) -> None:
        """Commit the ledger's deferred writes."""
        if self.store is not None:
            self.store.flush()

    def plan(self, ex: Exchange, connector: Connector, method: str, path: str, body: Any) -> None:
        """Record a request a dry run would send."""
        self.plan_to(ex, connector.name, method, connector.url(path), body)

    def plan_to(self, ex: Exchange, connector: str, method: str, url: str, body: Any) -> None:
        """Record a request a dry run would send, to ``url`` through ``connector``."""
        self.planned.append(
            PlannedRequest(
                ex.number, connector, method, self.redactor.scrub(url), self.redactor.redact(body)
            )
        )

    # ------------------------------------------------------------ run log
    def stopping(self) -> bool:
        """A stop was asked for (a signal, the daemon stopping): take no new order."""
        return self.stop is not None and self.stop.is_set()

    @property
    def dry_run(self) -> bool:
        """Nothing is written: a dry run or a trace."""
        return self.mode is not Mode.RUN

    def open_log(self) -> None:
        """Open the run's JSON-lines log file."""
        if self.dry_run:
            return
        folder = self.app.log_dir / self.flow.name
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"run-{self.run_id}.jsonl"
        self._log_file = self.log_path.open("a", encoding="utf-8")

    def write_log(self, record: dict[str, Any]) -> None:
        """Append one redacted record to the run log (and mirror it to structlog)."""
        record = self.redactor.redact(record)
        record.setdefault("at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        record.setdefault("flow", self.flow.name)
        record.setdefault("run_id", self.run_id)
        if self._log_file is not None:
            line = json.dumps(record, ensure_ascii=False, default=str)
            now = time.monotonic()
            with self._log_lock:
                self._log_file.write(line + "\n")
                if now - self._log_flushed >= LOG_FLUSH_SECONDS:  # tail -f sees it soon enough
                    self._log_file.flush()
                    self._log_flushed = now
        event = str(record.pop("event", "order"))
        log.debug(event, **{k: v for k, v in record.items() if k not in ("at", "flow", "run_id")})

    def close_log(self) -> None:
        """Close the run log."""
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @contextmanager
    def connectors_open(self) -> Iterator[None]:
        """Close both connectors' pools when the run ends."""
        try:
            yield
        finally:
            self.source.close()
            if self.target is not self.source:
                self.target.close()

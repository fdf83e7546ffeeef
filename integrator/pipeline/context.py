"""What a run shares with its stages: connectors, the ledger, the run log, dry-run output."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import structlog

from integrator.config.model import AppConfig, FlowConfig
from integrator.connectors.http import Connector
from integrator.connectors.redact import Redactor
from integrator.metrics import Metrics
from integrator.pipeline.exchange import Exchange
from integrator.scripting.pool import ScriptPool
from integrator.state.store import Store, Transition

__all__ = ["LIGHT_STATES", "PlannedRequest", "RunContext"]

T = TypeVar("T")

LOG_FLUSH_SECONDS = 0.5

LIGHT_STATES = frozenset({"read", "checked", "marked"})

log = structlog.get_logger("integrator.run")


@dataclass(frozen=True)
class PlannedRequest:
    """A request a dry run would have sent."""

    order: str
    connector: str
    method: str
    url: str
    body: Any


@dataclass
class RunContext:
    """One run of one flow."""

    app: AppConfig
    flow: FlowConfig
    store: Store
    redactor: Redactor
    source: Connector
    target: Connector
    run_id: int = 0
    dry_run: bool = False
    only_order: str | None = None
    fetch_pool: ThreadPoolExecutor | None = None
    scripts: ScriptPool = field(default_factory=ScriptPool)  # workers start on first call
    metrics: Metrics = field(default_factory=Metrics)
    stop: threading.Event | None = None  # set: take no new order (the daemon is stopping)
    replay: bool = False  # `integrator replay`: quarantine and backoff do not hold the order
    planned: list[PlannedRequest] = field(default_factory=list)
    log_path: Path | None = None
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

    # ------------------------------------------------------------- ledger
    def journal(
        self,
        ex: Exchange,
        state: str,
        message: str = "",
        *,
        log: Mapping[str, str] | None = None,
        defer: bool = False,
        **fields: Any,
    ) -> None:
        """Move the order to ``state`` in the ledger (nothing in a dry run).

        ``read``, ``checked`` and ``marked`` are kept in memory and written, event and all,
        in the transaction of the order's next change: losing them in a crash changes
        nothing, since the next run starts that order from the same place (the source again,
        or the resume after the write). Every other state is committed before this returns;
        ``sending`` and ``sent`` are what exactly-once rests on. ``defer`` (for ``done``): see
        :meth:`Store.record`.
        """
        ex.state = state
        if self.dry_run:
            return
        fields.setdefault("order_pk", ex.pk)
        if fields.get("last_error"):
            fields["last_error"] = self.redactor.scrub(str(fields["last_error"]))
        for k in ("request", "response"):  # stored as JSON text: serialised once, redacted
            if k in fields:
                fields[f"{k}_json"] = self.redactor.redact_json(fields.pop(k))
        message = self.redactor.scrub(message)
        if state in LIGHT_STATES:
            ex.pending.append(Transition(state, message, dt.datetime.now(dt.UTC), fields))
            return
        self.store.record(
            self.flow.name,
            ex.number,
            self.run_id,
            state,
            message,
            earlier=ex.pending,
            log={k: self.redactor.scrub(v) for k, v in log.items()} if log else None,
            defer=defer,
            **fields,
        )
        ex.pending.clear()

    def event(self, ex: Exchange | None, state: str, message: str) -> None:
        """An event that does not move the journal."""
        if not self.dry_run:
            self.store.add_event(
                self.flow.name,
                ex.number if ex else None,
                self.run_id,
                state,
                self.redactor.scrub(message),
            )

    def plan(self, ex: Exchange, connector: Connector, method: str, path: str, body: Any) -> None:
        """Record a request a dry run would send."""
        self.planned.append(
            PlannedRequest(
                ex.number, connector.name, method, connector.url(path), self.redactor.redact(body)
            )
        )

    # ------------------------------------------------------------ run log
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

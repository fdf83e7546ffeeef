"""Run one flow once: read orders, push each through the stages in a bounded worker pool.

The ledger decides where each order starts:

====================  ========================================================================
journal state          this run
====================  ========================================================================
none / read / checked  from the first stage
failed                 from the first stage, once its ``next_try`` has come
sending                query_check settles it (or the idempotency key makes a resend safe);
                       without either the order is quarantined, never silently resent
sent / marked / done   the write is skipped: resume after ``write`` with the stored answer
quarantined            skipped until replayed or resolved
====================  ========================================================================
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from integrator.errors import AmbiguousWriteError, FatalError, OrderError, PermanentError, SkipOrder
from integrator.pipeline.context import RunContext
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import OrderRef, SourceStage, Stage
from integrator.state.store import JournalEntry

__all__ = ["Outcome", "RunResult", "Runner"]

log = structlog.get_logger("integrator.runner")

RESUME_STATES = frozenset({"sent", "marked", "done"})
REJECTED = "erp.rejected"  # check_response sets "true": the ERP refused it, resending is safe
ANSWERED = "ambiguous_answered"  # the ERP answered the write with an error: nothing in flight


@dataclass(frozen=True)
class Outcome:
    """How one order ended in this run."""

    number: str
    status: str  # ok, failed, skipped
    state: str
    message: str = ""


@dataclass
class RunResult:
    """Counts and per-order outcomes of one run."""

    run_id: int
    flow: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    error: str | None = None
    failures: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """ok, partial (some orders failed), failed (the run stopped) or empty."""
        if self.error:
            return "failed"
        if self.failed:
            return "partial"
        return "ok"


class Runner:
    """Drives one run of a built flow."""

    def __init__(
        self,
        stages: list[Stage],
        run: RunContext,
        on_order: Callable[[Outcome], None] | None = None,
        limit: int | None = None,
    ) -> None:
        self.stages, self.run, self.on_order, self.limit = stages, run, on_order, limit
        sources = [s for s in stages if isinstance(s, SourceStage)]
        self.source = sources[0]
        self.order_stages = [s for s in stages if not isinstance(s, SourceStage)]
        writers = [i for i, s in enumerate(self.order_stages) if s.writes]
        self.write_index = writers[0] if writers else -1
        self.has_query_check = any(s.name == "query_check" for s in self.order_stages)
        self.safe_resend = (
            bool(getattr(self.order_stages[self.write_index], "repeatable", False))
            if writers
            else False
        )
        self._lock = threading.Lock()

    def execute(self) -> RunResult:
        """Open the stages, process every order, close; never raises for an order's failure."""
        run = self.run
        result = RunResult(run.run_id, run.flow.name)
        started = time.monotonic()
        workers = run.flow.concurrency
        run.fetch_pool = ThreadPoolExecutor(
            max_workers=min(4 * workers, 64), thread_name_prefix=f"{run.flow.name}-fetch"
        )
        opened: list[Stage] = []
        try:
            for stage in self.stages:
                stage.open(run)
                opened.append(stage)
            self._process_all(result, workers)
        except FatalError as exc:
            result.error = run.redactor.scrub(str(exc))
            log.error("run_failed", flow=run.flow.name, run_id=run.run_id, error=result.error)
        finally:
            for stage in reversed(opened):
                stage.close()
            run.fetch_pool.shutdown(wait=True)
            run.store.flush()
            result.seconds = time.monotonic() - started
        return result

    def _process_all(self, result: RunResult, workers: int) -> None:
        slots = threading.BoundedSemaphore(workers * 2)  # read ahead, but memory stays flat
        errors: list[BaseException] = []

        def done(f: Future[Outcome]) -> None:
            slots.release()
            exc = f.exception()
            if exc is not None:
                errors.append(exc)
                return
            self._count(result, f.result())

        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"{self.run.flow.name}-order"
        ) as pool:
            for n, ref in enumerate(self.source.iter_orders(self.run)):
                if self.limit is not None and n >= self.limit:
                    break
                if errors:
                    break
                if self.run.stop is not None and self.run.stop.is_set():
                    log.info("run_stopping", flow=self.run.flow.name, reason="shutdown requested")
                    break
                slots.acquire()
                pool.submit(self.process_order, ref).add_done_callback(done)
        if errors:
            raise errors[0]

    def _count(self, result: RunResult, outcome: Outcome) -> None:
        self.run.metrics.order(self.run.flow.name, outcome.status)
        with self._lock:
            if outcome.status == "ok":
                result.ok += 1
            elif outcome.status == "skipped":
                result.skipped += 1
            else:
                result.failed += 1
                result.failures.append(outcome)
        if self.on_order is not None:
            self.on_order(outcome)

    # ------------------------------------------------------------ one order
    def process_order(self, ref: OrderRef) -> Outcome:
        """Fetch, route by the ledger, run the stages; record the end. Runs in a worker."""
        run = self.run
        structlog.contextvars.bind_contextvars(
            flow=run.flow.name, run_id=run.run_id, order=ref.number
        )
        entry = run.store.entry(run.flow.name, ref.number)
        try:
            self._check_due(entry)
        except SkipOrder as skip:
            if not run.replay:
                return Outcome(ref.number, "skipped", entry.state if entry else "new", str(skip))
            assert entry is not None  # only an order with a journal can be held back
            entry = self._release(entry)
        try:
            ex = self.source.fetch(ref)
        except OrderError as exc:
            ex = Exchange(ref.pk, ref.number, {"pk": ref.pk, "number": ref.number})
            return self._failed(ex, entry, exc, -1)
        ex.attributes["run.id"] = str(run.run_id)
        try:
            self._route(ex, entry)
        except OrderError as exc:
            return self._failed(ex, entry, exc, -1)
        except SkipOrder as skip:
            if ex.state != "quarantined":  # a write still settling: later
                return Outcome(ex.number, "skipped", ex.state, str(skip))
            self._finish(ex, "failed", str(skip))  # quarantined now: a person must look
            return Outcome(ex.number, "failed", ex.state, str(skip))
        for i, stage in enumerate(self.order_stages):
            if ex.resume and i <= self.write_index:
                continue
            started = time.perf_counter()
            try:
                if run.dry_run and stage.side_effects:
                    stage.plan(ex)
                else:
                    stage.process(ex)
            except OrderError as exc:
                exc.stage = exc.stage or stage.name
                return self._failed(ex, entry, exc, i)
            except Exception as exc:  # noqa: BLE001 - a plug-in's bug fails its order, not the run
                err = PermanentError(f"{type(exc).__name__}: {exc}", stage=stage.name)
                return self._failed(ex, entry, err, i)
            finally:
                run.metrics.stage(run.flow.name, stage.name, time.perf_counter() - started)
            if (
                not ex.resume
                and ex.attributes.get("order_exists", "").lower() == "true"
                and i < self.write_index
            ):
                ex.resume = True
                run.journal(ex, "sent", f"{stage.name} set order_exists=true; not written")
        run.journal(
            ex,
            "done",
            "order complete",
            log=ex.log_attributes(),
            defer=True,  # committed with the next transaction: a crash before it loses nothing
            last_error=None,
            error_kind=None,
            next_try=None,
        )
        self._finish(ex, "ok")
        return Outcome(ex.number, "ok", ex.state)

    def _release(self, entry: JournalEntry) -> JournalEntry:
        """Replay: let a quarantined or backing-off order through, as if it had failed now."""
        state = "failed" if entry.state == "quarantined" else entry.state
        ex = Exchange(entry.order_pk or "", entry.order_number, {})
        self.run.journal(
            ex, state, f"replayed by hand (was {entry.state})", next_try=None, attempts=0
        )
        return dataclasses.replace(entry, state=state, next_try=None, attempts=0)

    def _settle_after(self) -> float:
        """Seconds to leave a possibly in-flight write alone before asking the ERP about it."""
        if self.run.flow.settle_seconds is not None:
            return self.run.flow.settle_seconds
        return 2 * self.run.target.config.timeout

    def _check_due(self, entry: JournalEntry | None) -> None:
        if entry is None:
            return
        if entry.state == "quarantined":
            raise SkipOrder("quarantined")
        if entry.state == "failed" and entry.next_try and entry.next_try > time.time():
            raise SkipOrder(f"backing off until {time.ctime(entry.next_try)}")

    def _route(self, ex: Exchange, entry: JournalEntry | None) -> None:
        run = self.run
        ex.attempts = entry.attempts if entry else 0
        if entry is None or entry.state in ("read", "checked", "failed"):
            run.journal(ex, "read", "read from the source")
            return
        ex.state = entry.state
        if entry.state in RESUME_STATES:
            ex.request, ex.response, ex.resume = entry.request, entry.response, True
            ex.data = ex.response
            run.event(ex, entry.state, "the ERP has this order: resuming after the write")
        elif entry.state == "sending":
            wait = self._settle_after() - entry.age_seconds()
            if entry.error_kind != ANSWERED and wait > 0:
                # The write may still be in flight (timeout, lost connection, crash): asking
                # the ERP now could miss an order it is about to commit.
                raise SkipOrder(f"write may still be in flight; settled in {wait:.0f}s")
            if self.has_query_check or self.safe_resend:
                ex.settle = True
                how = "query_check" if self.has_query_check else "a repeatable write"
                run.event(ex, "sending", f"ambiguous earlier write: {how} settles it")
            else:
                run.journal(
                    ex,
                    "quarantined",
                    "found in `sending` (the last write's outcome is unknown) and the "
                    "flow has no query_check: check the ERP, then `integrator resolve`",
                    error_kind="ambiguous",
                )
                raise SkipOrder("quarantined: ambiguous write")

    def _failed(
        self, ex: Exchange, entry: JournalEntry | None, exc: OrderError, index: int
    ) -> Outcome:
        run = self.run
        msg = run.redactor.scrub(f"{exc.stage or 'read'}: {exc}")
        ex.failure = exc
        ex.attributes.update(
            {"failed": "true", "failure.stage": exc.stage or "read", "failure.message": msg}
        )
        if index >= 0:
            for stage in self.order_stages[index + 1 :]:
                if stage.run_on_failure and not run.dry_run:
                    try:
                        stage.process(ex)
                    except OrderError as post_exc:
                        msg += f"; {stage.name} also failed: {post_exc}"
        attempts = ex.attempts + 1
        logs = ex.log_attributes()
        if isinstance(exc, AmbiguousWriteError) or (ex.settle and ex.state == "sending"):
            # The ERP may have it: stay `sending`; a later run settles it. An answer (a 5xx)
            # settles at once; a timeout or lost connection waits out `settle_seconds`.
            kind = ANSWERED  # settling failed after the wait: nothing is in flight any more
            if isinstance(exc, AmbiguousWriteError):
                kind = ANSWERED if exc.status is not None else "ambiguous"
            run.journal(
                ex,
                "sending",
                msg,
                log=logs,
                last_error=msg,
                error_kind=kind,
                attempts=attempts,
            )
        elif ex.attributes.get(REJECTED) != "true" and (
            ex.state in RESUME_STATES or ex.state == "quarantined"
        ):
            # Written already: keep the state, so the write is never repeated.
            state = ex.state
            if attempts >= run.flow.max_attempts and exc.kind == "permanent":
                state = "quarantined"
            run.journal(
                ex, state, msg, log=logs, last_error=msg, error_kind=exc.kind, attempts=attempts
            )
        else:
            state, next_try = "failed", None
            if exc.kind == "permanent":
                if attempts >= run.flow.max_attempts:
                    state = "quarantined"
                else:
                    next_try = time.time() + run.flow.backoff_seconds * 2 ** (attempts - 1)
            run.journal(
                ex,
                state,
                msg,
                log=logs,
                last_error=msg,
                error_kind=exc.kind,
                attempts=attempts,
                next_try=next_try,
            )
        log.warning("order_failed", stage=exc.stage, error=msg, state=ex.state)
        self._finish(ex, "failed", msg)
        return Outcome(ex.number, "failed", ex.state, msg)

    def _finish(self, ex: Exchange, status: str, message: str = "") -> None:
        """Append the order's end to the run log (the store has it with the last journal change)."""
        self.run.write_log(
            {
                "event": f"order_{status}",
                "order": ex.number,
                "state": ex.state,
                "error": message or None,
                "log": ex.log_attributes(),
            }
        )

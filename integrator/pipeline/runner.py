"""Run one flow once: list orders, push each through the stages in a bounded worker pool.

The engine runs stages; the ledger (``state/ledger.py``) decides order states. Per order:

1. the listing thread drops an order listed twice in this run; a worker asks the ledger where
   the order starts (:meth:`Ledger.admit`): skipped (quarantined, backing off, a write still
   settling), or started with a fact (read, resumed after the write, settling an earlier
   write, re-listed after done, delivered to another target);
2. the worker fetches it and runs the stages, each as the run's mode allows (capabilities, never
   names): a dry run plans what has side effects, and everything after a planned write; a
   trace plans what calls out and takes the write's answer from a recording;
3. the order's end is a fact: done, or its failure classified (``ledger.classify``).

What stops a run rather than an order: a FatalError (the source cannot be read, the state
store fails), a SystemicError (authentication refused after a fresh login, a tripped circuit
breaker), or a stop request (a signal, the daemon stopping). In-flight orders end first; no
order is charged for it. A bug in a stage is an internal error: logged with its traceback,
the order's state kept, never charged and never quarantined.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from integrator.errors import FatalError, OrderError, PermanentError, SystemicError
from integrator.pipeline.context import Mode, RunContext
from integrator.pipeline.exchange import Exchange, var_attributes
from integrator.pipeline.stage import OrderRef, SourceStage, Stage
from integrator.state.journal import JournalEntry
from integrator.state.ledger import (
    Admission,
    ErrorKind,
    Fact,
    LedgerError,
    Route,
    State,
    Track,
    classify,
)
from integrator.state.runs import RunStatus
from integrator.state.store import StateStoreError

__all__ = ["Outcome", "RunResult", "Runner", "StageObserver"]

log = structlog.get_logger("integrator.runner")

# (stage, exchange after it, attributes before it, its error or None)
StageObserver = Callable[[Stage, Exchange, dict[str, str], OrderError | None], None]

REJECTED = "erp.rejected"  # check_response sets "true": the ERP refused it, resending is safe
LISTED_TWICE = "listed twice in this run"


@dataclass(frozen=True)
class Outcome:
    """How one order ended in this run."""

    number: str
    status: str  # ok, failed, skipped
    state: str
    message: str = ""
    reason: str = ""  # skipped: why (quarantined, backing off, settling, listed twice)


@dataclass
class RunResult:
    """Counts and per-order outcomes of one run."""

    run_id: int
    flow: str
    ok: int = 0
    failed: int = 0
    skipped_by: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    interrupted: bool = False
    abandoned: int = 0  # orders still in flight when the grace period ended
    internal_errors: int = 0
    failures: list[Outcome] = field(default_factory=list)
    skips: list[Outcome] = field(default_factory=list)  # a dry run's: it says why, per order
    seconds: float = 0.0
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)  # reason → 3 numbers

    @property
    def skipped(self) -> int:
        """Orders left alone this run, for any reason."""
        return sum(self.skipped_by.values())

    @property
    def status(self) -> RunStatus:
        """How the run ended."""
        if self.interrupted:
            return RunStatus.INTERRUPTED
        if self.error:
            return RunStatus.FAILED
        if self.failed:
            return RunStatus.PARTIAL
        return RunStatus.OK


def skip_category(reason: str) -> str:
    """The summary's name for a skip reason (its words before any detail)."""
    for head in ("quarantined", "backing off", "settling", LISTED_TWICE):
        if reason.startswith(head):
            return head
    return reason.split(":")[0]


class Runner:
    """Drives one run of a built flow."""

    def __init__(
        self,
        stages: list[Stage],
        run: RunContext,
        on_order: Callable[[Outcome], None] | None = None,
        limit: int | None = None,
        grace: float | None = None,
        pending: Callable[[], list[str]] | None = None,
        records: list[tuple[dict[str, Any], dict[str, str]]] | None = None,
        on_stage: StageObserver | None = None,
        listing: bool = True,
    ) -> None:
        """``grace``: seconds in-flight orders get once the run is asked to stop (None: as
        long as they take). ``pending``: takes the orders events asked for, after the
        listing. ``records``: trace mode's recorded documents (with attributes to start them with),
        instead of the source.
        ``on_stage``: called after every stage of every order (the workbench's trace).
        ``listing``: False for a run of what events queued alone."""
        self.stages, self.run, self.on_order, self.limit = stages, run, on_order, limit
        self.grace, self.pending, self.records = grace, pending, records
        self.on_stage, self.listing = on_stage, listing
        self.source = next(s for s in stages if isinstance(s, SourceStage))
        self.order_stages = [s for s in stages if not isinstance(s, SourceStage)]
        writers = [i for i, s in enumerate(self.order_stages) if s.writes]
        self.write_index = writers[0] if writers else -1
        self._lock = threading.Lock()
        self._taken = 0  # orders admitted (--limit counts these, not the skipped ones)
        self._stopped: BaseException | None = None  # why the run stops taking orders
        self.traced: list[Exchange] = []  # trace mode: every exchange, for the workbench
        self.constants = var_attributes(run.flow.vars)  # each order starts with them

    # --------------------------------------------------------------------- the run
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
        at_once = False  # a second signal (KeyboardInterrupt): nothing more is waited for
        try:
            for stage in self.stages:
                stage.open(run)
                opened.append(stage)
            if run.mode is not Mode.TRACE:
                for stage in self.stages:
                    stage.begin(run)
            self._settle_left_behind()
            self._process_all(result, workers)
        except FatalError as exc:
            result.error = run.redactor.scrub(str(exc))
            log.error("run_failed", flow=run.flow.name, run_id=run.run_id, error=result.error)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            result.error = _store_error(exc)
            log.error("run_failed", flow=run.flow.name, run_id=run.run_id, error=result.error)
        except Exception as exc:
            # ends with a clear status instead of a traceback and a run left `running`
            result.error = run.redactor.scrub(f"internal error: {type(exc).__name__}: {exc}")
            log.exception("run_crashed", flow=run.flow.name, run_id=run.run_id)
            run.write_log({"event": "run_crashed", "error": result.error,
                           "traceback": traceback.format_exc()})  # fmt: skip
        except KeyboardInterrupt:
            at_once = True
            raise
        finally:
            # Orders still in flight (the grace period ran out, or a second signal) keep using
            # the stages and the fetch pool until the process ends: leave those to it.
            if not (result.abandoned or at_once):
                for stage in reversed(opened):
                    try:
                        stage.close()
                    except Exception:
                        log.exception("stage_close_failed", stage=stage.name)
            run.fetch_pool.shutdown(wait=not (result.abandoned or at_once))
            try:
                run.flush()
            except (SQLAlchemyError, sqlite3.Error) as exc:
                result.error = result.error or _store_error(exc)
            result.seconds = time.monotonic() - started
        return result

    def _settle_left_behind(self, limit: int = 200) -> None:
        """Rows a crash left at `sent`/`marked` (the mark landed, its confirmation did not)
        that the source no longer lists: the flow's mark stage asks the source whether each is
        marked, and the ledger settles those that are. Flows whose mark cannot be asked (ERP
        feeds, no mark stage) leave them; ``orders show`` says so."""
        run = self.run
        markers = [s for s in self.order_stages if s.marks]
        if run.mode is not Mode.RUN or not markers or run.only_order or self.records is not None:
            return
        # Every such row is an earlier run's (this run holds the flow's lock), whatever its age.
        for entry in run.ledger.unsettled(0.0, limit):
            if self._stopping():
                return
            if markers[-1].is_marked(run, entry.order_pk or "", entry.order_number):
                self._apply(
                    Track.of(entry.order_number, entry.order_pk, entry),
                    Fact.SETTLED,
                    f"the source shows it marked ({markers[-1].name} asked): a crash had left "
                    f"the row at {entry.state}",
                )

    def _listing(self) -> Iterator[OrderRef]:
        """The source's orders, then what events asked for (each once per run)."""
        run = self.run
        if self.records is not None:
            for doc, attributes in self.records:
                ex = self.source.recorded(run, doc)
                ex.attributes.update(attributes)
                yield OrderRef(ex.pk, ex.number, {"_recorded": ex})
            return
        if self.listing:
            yield from self.source.iter_orders(run)
        if self.pending is None or run.only_order:
            return
        while not self._stopping():
            ids = self.pending()
            if not ids:
                return
            for oid in ids:
                yield from self.source.iter_orders(run, only=oid)

    def _process_all(self, result: RunResult, workers: int) -> None:
        run = self.run
        slots = threading.BoundedSemaphore(workers * 2)  # read ahead, but memory stays flat
        in_flight: dict[Future[Outcome | None], str] = {}  # → order number; memory stays flat
        errors: list[BaseException] = []
        seen: set[str] = set()

        def done(f: Future[Outcome | None]) -> None:
            with self._lock:
                in_flight.pop(f, None)
            slots.release()
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                with self._lock:
                    errors.append(exc)
                return
            outcome = f.result()
            if outcome is not None:  # None: past --limit, not taken
                self._count(result, outcome)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{run.flow.name}-order")
        at_once = False
        try:
            for ref in self._listing():
                if self._stopping() or self._limit_reached():
                    break
                if ref.number in seen:
                    self._count(result, Outcome(ref.number, "skipped", "", reason=LISTED_TWICE))
                    continue
                seen.add(ref.number)
                if not self._slot(slots):
                    break
                fut = pool.submit(self.process_order, ref)
                with self._lock:
                    in_flight[fut] = ref.number
                fut.add_done_callback(done)
        except KeyboardInterrupt:
            at_once = True  # a second signal: stop now, the orders in flight keep their state
            raise
        finally:
            left = self._finish_in_flight(result, in_flight, at_once)
            pool.shutdown(wait=not (left or at_once), cancel_futures=True)
            result.abandoned = len(left)
            if left:
                log.error("grace_period_over", flow=run.flow.name, orders_in_flight=len(left))
                for number in left:
                    run.ledger.note(
                        number,
                        "interrupted",
                        "the run stopped while this order was in flight; it keeps the state it "
                        "reached and resumes on the next run",
                        Fact.INTERRUPTED,
                    )
        stop = self._stopped or (errors[0] if errors else None)
        if stop is not None and not result.interrupted:
            raise stop

    def _finish_in_flight(
        self, result: RunResult, in_flight: dict[Future[Outcome | None], str], at_once: bool
    ) -> list[str]:
        """Wait for the orders in flight: as long as they take, or, once a signal stops the run
        (before or while this waits), ``grace`` seconds; orders taken but not started are
        cancelled when the run stops. Returns the numbers still in flight at the end."""
        run = self.run
        deadline: float | None = None
        while True:
            with self._lock:
                pending = dict(in_flight)
            if not pending:
                return []
            if at_once:
                return list(pending.values())
            if self._stopping() and deadline is None:
                for f in pending:
                    f.cancel()  # taken but not started: left for the next run
                signalled = run.stop is not None and run.stop.is_set()
                if signalled:
                    result.interrupted = True
                    log.info("run_stopping", flow=run.flow.name, reason="stop requested")
                grace = self.grace if signalled and self.grace is not None else float("inf")
                deadline = time.monotonic() + grace
                continue
            left = float("inf") if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return list(pending.values())
            # Short slices: a signal may come while this waits, and must start the grace.
            wait(list(pending), timeout=min(0.2, left), return_when=FIRST_COMPLETED)

    def _limit_reached(self) -> bool:
        with self._lock:
            return self.limit is not None and self._taken >= self.limit

    def _slot(self, slots: threading.BoundedSemaphore) -> bool:
        """Wait for room in the pool; False (no slot taken) once the run is stopping, which a
        signal can ask for while this thread waits."""
        while not slots.acquire(timeout=0.2):
            if self._stopping():
                return False
        if self._stopping():
            slots.release()
            return False
        return True

    def _stopping(self) -> bool:
        stop = self.run.stop
        return self._stopped is not None or (stop is not None and stop.is_set())

    def _halt(self, why: BaseException) -> None:
        """Take no new order: the run stops for ``why`` once the ones in flight end."""
        with self._lock:
            if self._stopped is None:
                self._stopped = why

    def _count(self, result: RunResult, outcome: Outcome) -> None:
        if outcome.status == "skipped":
            self.run.metrics.order(self.run.flow.name, "skipped")
            why = skip_category(outcome.reason)
            with self._lock:
                result.skipped_by[why] += 1
                examples = result.skipped_examples.setdefault(why, [])
                if len(examples) < 3:
                    examples.append(outcome.number)
                if self.run.mode is Mode.DRY_RUN:
                    result.skips.append(outcome)
        else:
            self.run.metrics.order(self.run.flow.name, outcome.status)
            with self._lock:
                if outcome.status == "ok":
                    result.ok += 1
                else:
                    result.failed += 1
                    result.failures.append(outcome)
                    if outcome.reason == "internal error":
                        result.internal_errors += 1
        if self.on_order is not None:
            self.on_order(outcome)

    # -------------------------------------------------------------------- one order
    def process_order(self, ref: OrderRef) -> Outcome | None:
        """In a worker: ask the ledger where the order starts (or why it is skipped), run the
        stages, record its end. Raises only what stops the run (FatalError). None when
        ``--limit`` orders were taken already (this one is not)."""
        run = self.run
        structlog.contextvars.bind_contextvars(
            flow=run.flow.name, run_id=run.run_id, order=ref.number
        )
        track = Track(ref.number, ref.pk)
        try:
            entry = run.ledger.entry(ref.number) if run.mode is not Mode.TRACE else None
            admission = run.ledger.admit(entry, replay=run.replay)
            if admission.skip:
                state = entry.state if entry else "new"
                return Outcome(ref.number, "skipped", state, reason=admission.skip)
            with self._lock:
                if self.limit is not None and self._taken >= self.limit:
                    return None
                self._taken += 1
            track = Track.of(ref.number, ref.pk, entry)
            return self._order(ref, entry, admission, track)
        except SystemicError as exc:
            self._halt(exc)
            if track.writing:  # refused before it was processed: nothing was created
                self._apply(track, Fact.ERP_REFUSED, str(exc), error_kind=ErrorKind.SYSTEMIC)
            return Outcome(ref.number, "failed", track.state, run.redactor.scrub(str(exc)))
        except FatalError as exc:
            self._halt(exc)
            raise
        except (SQLAlchemyError, sqlite3.Error) as exc:
            err = StateStoreError(_store_error(exc))
            self._halt(err)
            raise err from None
        except Exception as exc:  # noqa: BLE001 - a bug in a stage or the ledger: not the order's
            return self._internal(track, exc)

    def _order(
        self, ref: OrderRef, entry: JournalEntry | None, admission: Admission, track: Track
    ) -> Outcome:
        run = self.run
        if admission.release:
            was = entry.state if entry else "new"
            self._apply(track, Fact.RELEASED, f"replayed by {run.replay_by} (was {was})")
        assert admission.fact is not None  # not skipped
        self._apply(track, admission.fact, admission.message)
        if admission.route is Route.HELD:  # quarantined now: a person must look
            msg = run.redactor.scrub(admission.message)
            self._log_end(ref.number, track.state, "failed", msg, {})
            return Outcome(ref.number, "failed", track.state, f"quarantined: {msg}")
        try:
            recorded = ref.summary.get("_recorded")
            ex = recorded if isinstance(recorded, Exchange) else self.source.fetch(ref)
        except OrderError as exc:
            ex = Exchange(ref.pk, ref.number, {"pk": ref.pk, "number": ref.number})
            ex.track = track
            exc.stage = exc.stage or self.source.name
            return self._failed(ex, exc, -1)
        ex.track = track
        ex.attributes["run.id"] = str(run.run_id)
        for name, value in self.constants.items():  # trace mode: a recorded attribute wins
            ex.attributes.setdefault(name, value)
        if admission.route is Route.RESUME and entry is not None:
            ex.request, ex.response, ex.resume = entry.request, entry.response, True
            ex.data = ex.response
            if 0 <= self.write_index < len(self.order_stages):
                self.order_stages[self.write_index].resumed(ex)
        ex.settle = admission.route is Route.SETTLE
        if run.mode is Mode.TRACE:
            self.traced.append(ex)
        planned_write = False
        for i, stage in enumerate(self.order_stages):
            if ex.resume and i <= self.write_index:
                continue
            started = time.perf_counter()
            before = dict(ex.attributes) if self.on_stage is not None else {}
            try:
                planned_write = self._stage(stage, ex, planned_write)
            except OrderError as exc:
                exc.stage = exc.stage or stage.name
                if self.on_stage is not None:
                    self.on_stage(stage, ex, before, exc)
                return self._failed(ex, exc, i)
            finally:
                run.metrics.stage(run.flow.name, stage.name, time.perf_counter() - started)
            if self.on_stage is not None:
                self.on_stage(stage, ex, before, None)
            if track.state is State.SENT and ex.attributes.get(REJECTED, "").lower() == "true":
                # check_response read a refusal inside the ERP's 2xx (JSON-RPC ERPs): nothing
                # was created, the order is failed and written again later
                refused = PermanentError(
                    f"the ERP refused the order ({stage.name} set {REJECTED})", stage=stage.name
                )
                return self._failed(ex, refused, i)
            if (
                not ex.resume
                and ex.attributes.get("order_exists", "").lower() == "true"
                and i < self.write_index
            ):
                ex.resume = True
                self._apply(track, Fact.FOUND, f"{stage.name} set order_exists=true; not written")
        if not run.dry_run:  # a dry run's order never reached the ERP: nothing to complete
            self._apply(track, Fact.DONE, "order complete", log=ex.log_attributes())
        self._log_end(ex.number, track.state, "ok", "", ex.log_attributes())
        run.breaker.record(None)
        return Outcome(ex.number, "ok", track.state)

    def _stage(self, stage: Stage, ex: Exchange, planned_write: bool) -> bool:
        """Run one stage as the mode allows; True once the write has been planned (a dry run
        plans every later stage: none of them has the ERP's answer)."""
        run = self.run
        if run.mode is Mode.RUN:
            stage.process(ex)
        elif run.mode is Mode.DRY_RUN:
            if stage.side_effects or planned_write:
                stage.plan(ex)
                return planned_write or stage.writes
            stage.process(ex)
        elif stage.writes:
            stage.plan(ex)
            assert run.trace_answer is not None  # set by the trace's caller
            ex.request = ex.data
            self._apply(ex.track, Fact.WRITE_STARTED, "trace: not sent", request=ex.request)
            answer, status = run.trace_answer(ex)
            stage.accept(ex, answer, status)
            self._apply(ex.track, Fact.WRITE_ANSWERED, f"trace: recorded answer {status}")
        elif stage.calls_out or stage.side_effects:
            stage.plan(ex)
        else:
            stage.process(ex)
        return planned_write

    def _apply(self, track: Track, fact: Fact, message: str = "", **data: Any) -> State:
        return self.run.ledger.apply(track, fact, message, **data)

    def _failed(self, ex: Exchange, exc: OrderError, index: int) -> Outcome:
        """The order failed at stage ``index`` (-1: fetching it): run_on_failure stages, then
        the fact the failure reports."""
        run = self.run
        msg = run.redactor.scrub(f"{exc.stage or 'read'}: {exc}")
        ex.failure = exc
        ex.attributes.update(
            {"failed": "true", "failure.stage": exc.stage or "read", "failure.message": msg}
        )
        stops: FatalError | None = None  # a run_on_failure stage hit the system: after recording
        if index >= 0 and run.mode is Mode.RUN:
            for stage in self.order_stages[index + 1 :]:
                if stage.run_on_failure:
                    try:
                        stage.process(ex)
                    except OrderError as post_exc:
                        msg += f"; {stage.name} also failed: {post_exc}"
                    except FatalError as post_exc:
                        stops = post_exc
                        break
        rejected = ex.attributes.get(REJECTED, "").lower() == "true"
        fact, charged = classify(exc, ex.track, rejected=rejected)
        # A 5xx answer to a write proves nothing: a gateway may answer 502/504 while the ERP
        # behind it still commits. Like a timeout, it is settled after settle_seconds.
        kind = ErrorKind.AMBIGUOUS if fact is Fact.MAY_HAVE_LANDED else None
        state = self._apply(
            ex.track, fact, msg, charged=charged, error_kind=kind, log=ex.log_attributes()
        )
        log.warning("order_failed", stage=exc.stage, error=msg, state=state.value)
        self._log_end(ex.number, state, "failed", msg, ex.log_attributes())
        tripped = run.breaker.record(exc)
        if tripped is not None:
            self._halt(tripped)
        if stops is not None:
            raise stops
        return Outcome(ex.number, "failed", state, msg)

    def _internal(self, track: Track, exc: Exception) -> Outcome:
        """A bug: logged with its traceback, recorded, the state kept, nothing charged."""
        run = self.run
        what = "ledger" if isinstance(exc, LedgerError) else "stage"
        msg = run.redactor.scrub(
            f"internal error ({what}): {type(exc).__name__}: {exc}; the order's state is kept "
            "and it is tried again next run: please report it (run with --debug for details)"
        )
        log.exception("order_internal_error", order=track.number, error=msg)
        trace = traceback.format_exc()
        track.writing = False
        try:
            self._apply(track, Fact.INTERNAL_ERROR, msg)
        except Exception:
            log.exception("internal_error_not_recorded", order=track.number)
        self._log_end(track.number, track.state, "failed", msg, {}, trace)
        return Outcome(track.number, "failed", track.state, msg, "internal error")

    def _log_end(
        self,
        number: str,
        state: State,
        status: str,
        message: str,
        logs: dict[str, str],
        trace: str = "",
    ) -> None:
        """Append the order's end to the run log (the store has it with the last change)."""
        record: dict[str, Any] = {
            "event": f"order_{status}",
            "order": number,
            "state": state.value,
            "error": message or None,
            "log": logs,
        }
        if trace:
            record["traceback"] = trace
        self.run.write_log(record)


def _store_error(exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
    return (
        f"the state store failed: {type(exc).__name__}: {detail}; the run stopped (orders in "
        "flight keep the state they reached and resume on the next run)"
    )

"""The ledger: the one owner of order state.

Stages and commands report *facts* (the ERP answered the write, query_check found the order, a
person released it); the table below decides each order's next *state*. Nothing else changes a
journal state: :class:`Ledger` is the only caller of the journal's write. A fact the table does
not allow for the order's state is a bug: :class:`LedgerError`, logged with its traceback by
whoever catches it, and the state does not change.

Where an order starts in a run is decided here too (:meth:`Ledger.admit`): from its journal,
before anything is fetched. Evidence wins over memory: an order whose mark was confirmed
(``done``) and that the source lists as unsent again, or whose delivery went to a connector
with another ConnectorId, is asked for again (query_check) or held for a person, never marked
on memory alone.

Rules in the table (besides a plain next state):

=========  ===================================================================================
KEEP       the state does not change; the fact is recorded as an event
BACKOFF    ``failed``; a charged failure waits ``backoff_seconds`` * 2^(attempts-1) and the
           order is ``quarantined`` once ``max_attempts`` charged failures are reached
HOLD       the ERP has the order: the state is kept (the write is never repeated); quarantined
           after ``max_attempts`` charged failures, held at the state it was in
RECHECK    ``read`` again when the flow can ask the ERP (query_check), else ``quarantined``
RELEASE    back to where it was held: ``sent``/``marked`` resume after the write, ``sending``
           is settled, anything else starts over as ``failed`` with no attempts
=========  ===================================================================================

Only failures about the order itself are *charged* (counted against ``max_attempts``): a
permanent error (4xx, script, mapping). Timeouts, 5xx, refused connections, authentication
and a tripped circuit breaker are about the system: retried, never charged.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from integrator.errors import (
    AmbiguousWriteError,
    IntegratorError,
    OrderError,
    RetriableError,
    SystemicError,
)
from integrator.state.clock import now
from integrator.state.entries import Delivery, JournalEntry, Transition

if TYPE_CHECKING:
    from integrator.connectors.redact import Redactor
    from integrator.state.store import Store

__all__ = [
    "LIGHT",
    "TABLE",
    "Admission",
    "ErrorKind",
    "Fact",
    "Ledger",
    "LedgerError",
    "Policy",
    "Route",
    "Rule",
    "State",
    "Track",
    "classify",
    "describe_table",
]


class State(StrEnum):
    """Where an order stands in one flow."""

    NEW = "new"  # no journal row yet
    READ = "read"  # listed and fetched this run
    CHECKED = "checked"  # query_check: not in the ERP
    SENDING = "sending"  # a write started; its outcome is not known yet
    SENT = "sent"  # the ERP has it (its answer is stored); not marked yet
    MARKED = "marked"  # marked in the source; not confirmed done yet
    DONE = "done"  # delivered and marked
    FAILED = "failed"  # failed before anything reached the ERP; retried when due
    QUARANTINED = "quarantined"  # a person must look (replay, resolve, release)


class Fact(StrEnum):
    """What a stage, the engine or a person reports about an order."""

    READ = "read"  # the source listed it and it is due: start from the first stage
    RESUMED = "resumed"  # the journal says the ERP has it: go on after the write
    SETTLING = "settling"  # the journal says `sending`: the flow settles it now
    UNSETTLED = "unsettled"  # the journal says `sending` and the flow cannot settle it
    RELISTED = "relisted"  # done, yet the source lists it as unsent again
    TARGET_CHANGED = "target_changed"  # delivered to a connector with another ConnectorId
    FOUND = "found"  # query_check (or a script's order_exists): the ERP has it
    NOT_FOUND = "not_found"  # query_check: the ERP does not have it
    WRITE_STARTED = "write_started"  # the request is about to go out
    WRITE_ANSWERED = "write_answered"  # 2xx: the ERP took it (its answer, maybe unusable)
    MAY_HAVE_LANDED = "may_have_landed"  # timeout, lost connection, 5xx: outcome unknown
    ERP_REFUSED = "erp_refused"  # the ERP created nothing: a resend is safe
    FAILED = "failed"  # a stage failed (before the write, while settling, or after it)
    MARKED = "marked"  # the source took the mark
    DONE = "done"  # every stage passed
    SETTLED = "settled"  # the source says the order is marked: a crash left the row behind
    EXPORTED = "exported"  # an export step delivered it through a connector
    RELEASED = "released"  # a person let it through (who, why)
    RESOLVED_SENT = "resolved_sent"  # a person: the ERP has it
    RESOLVED_RESEND = "resolved_resend"  # a person: the ERP does not have it
    INTERRUPTED = "interrupted"  # the run stopped while the order was in flight
    INTERNAL_ERROR = "internal_error"  # a bug: not charged, state kept


class ErrorKind(StrEnum):
    """Why an order's last attempt failed (``error_kind`` on its row)."""

    PERMANENT = "permanent"  # about the order: charged
    RETRIABLE = "retriable"  # about the system: retried on the next run, not charged
    SYSTEMIC = "systemic"  # authentication or a tripped circuit: the run stopped
    AMBIGUOUS = "ambiguous"  # the write may still land: settle after settle_seconds
    ANSWERED = "ambiguous_answered"  # outcome unknown but nothing in flight: settle at once
    INTERNAL = "internal"  # a bug in a stage or the ledger
    UNVERIFIED = "unverified"  # re-listed after done, or the target changed; no query_check


class Rule(Enum):
    """A next state that depends on the order (see the module docstring)."""

    KEEP = "keep"
    BACKOFF = "backoff"
    HOLD = "hold"
    RECHECK = "recheck"
    RELEASE = "release"


S, F, R = State, Fact, Rule
_BEFORE_WRITE = (S.NEW, S.READ, S.CHECKED, S.FAILED)
_WRITTEN = (S.SENT, S.MARKED)


def _build() -> dict[tuple[State, Fact], State | Rule]:
    t: dict[tuple[State, Fact], State | Rule] = {}
    for s in (S.NEW, S.READ, S.CHECKED, S.FAILED):
        t[s, F.READ] = S.READ
    for s in _WRITTEN:
        t[s, F.RESUMED] = R.KEEP
    t[S.SENDING, F.SETTLING] = R.KEEP
    t[S.SENDING, F.UNSETTLED] = S.QUARANTINED
    t[S.DONE, F.RELISTED] = R.RECHECK
    for s in (S.SENDING, S.SENT, S.MARKED, S.DONE):
        t[s, F.TARGET_CHANGED] = R.RECHECK
    # query_check
    for s in (S.READ, S.CHECKED, S.SENDING):
        t[s, F.FOUND] = S.SENT
        t[s, F.NOT_FOUND] = S.CHECKED
    # the write: never from sent, marked or done
    for s in (S.READ, S.CHECKED, S.SENDING):
        t[s, F.WRITE_STARTED] = S.SENDING
    t[S.SENDING, F.WRITE_ANSWERED] = S.SENT
    t[S.SENDING, F.MAY_HAVE_LANDED] = S.SENDING
    t[S.SENDING, F.ERP_REFUSED] = R.BACKOFF
    t[S.SENT, F.ERP_REFUSED] = R.BACKOFF  # a 2xx that says no (check_response)
    # failures
    for s in _BEFORE_WRITE:
        t[s, F.FAILED] = R.BACKOFF
    t[S.SENDING, F.FAILED] = R.KEEP  # settling failed: still unknown, nothing in flight
    for s in _WRITTEN:
        t[s, F.FAILED] = R.HOLD
    # after the write
    for s in _WRITTEN:
        t[s, F.MARKED] = S.MARKED
        t[s, F.DONE] = S.DONE
        t[s, F.SETTLED] = S.DONE
    for s in (S.READ, S.CHECKED):
        t[s, F.DONE] = S.DONE  # a flow without a write: its exports delivered it
    # people
    t[S.QUARANTINED, F.RELEASED] = R.RELEASE
    t[S.FAILED, F.RELEASED] = S.FAILED
    for s in (S.SENDING, S.FAILED, S.QUARANTINED):
        t[s, F.RESOLVED_SENT] = S.SENT
    for s in (S.SENDING, S.QUARANTINED):
        t[s, F.RESOLVED_RESEND] = S.FAILED
    # in any state
    for s in State:
        t[s, F.INTERRUPTED] = R.KEEP
        t[s, F.INTERNAL_ERROR] = R.KEEP
        if s is not S.NEW:
            t[s, F.EXPORTED] = R.KEEP
    return t


TABLE: Mapping[tuple[State, Fact], State | Rule] = _build()

# Facts kept in memory and written with the order's next durable change: losing them in a
# crash changes nothing, the next run starts that order from the same place.
LIGHT = frozenset({F.READ, F.RESUMED, F.SETTLING, F.NOT_FOUND, F.MARKED})
# Committed with the next transaction of any worker (group commit), at most 0.5 s late: lost
# in a crash, the order stays `sent`/`marked` and resumes after the write.
DEFERRED = frozenset({F.DONE})


_MESSAGE = object()  # in a row's fields: the fact's message goes in last_error


class LedgerError(IntegratorError):
    """A fact the table does not allow: a bug, never a silent state change."""


@dataclass(frozen=True)
class Policy:
    """What the flow lets the ledger do."""

    can_check: bool = False  # a stage before the write asks the ERP (query_check)
    safe_resend: bool = False  # the write carries an idempotency key, or is idempotent
    max_attempts: int = 5
    backoff_seconds: float = 60.0
    settle_seconds: float = 60.0  # leave a write that may be in flight alone this long
    target_id: str = ""  # the ConnectorId of the write's target


@dataclass
class Track:
    """What the ledger knows of one order while it is handled."""

    number: str
    pk: str | None
    state: State = S.NEW
    attempts: int = 0
    held: State | None = None  # quarantined: where it was held
    reached: bool = False  # a write was started, or the ERP said it had the order
    writing: bool = False  # a write started and its outcome is not known yet
    error_kind: str | None = None
    pending: list[Transition] = field(default_factory=list)

    @classmethod
    def of(cls, number: str, pk: str | None, entry: JournalEntry | None) -> Track:
        """The track of an order from its journal row (a new one without)."""
        if entry is None:
            return cls(number, pk)
        return cls(
            number,
            pk or entry.order_pk,
            State(entry.state),
            entry.attempts,
            State(entry.held_state) if entry.held_state else None,
            entry.request is not None or entry.response is not None,
            False,
            entry.error_kind,
        )


class Route(Enum):
    """Where an admitted order starts."""

    FRESH = "from the first stage"
    RESUME = "after the write, with the stored answer"
    SETTLE = "at query_check, which settles an earlier write"
    HELD = "nowhere: the admission fact quarantined it"


@dataclass(frozen=True)
class Admission:
    """The ledger's word on an order the source listed: skip it (and why), or the fact that
    starts it and where it starts."""

    skip: str = ""  # a reason: quarantined, backing off until …, settling until …
    fact: Fact | None = None
    message: str = ""
    route: Route = Route.FRESH
    release: bool = False  # replay: a RELEASED fact comes first


def classify(exc: BaseException, track: Track, *, rejected: bool = False) -> tuple[Fact, bool]:
    """The fact an order's failure reports, and whether it is charged to the order.

    During a write, a failure that may hide a created order is ``MAY_HAVE_LANDED``: an
    AmbiguousWriteError, or a retriable one that reached the ERP (a timeout or 5xx on a
    repeatable write, which the connector raises as retriable); any other failure of the write
    proves nothing was created (a 4xx, a 429, a refused connection, a 401 after a fresh
    login): ``ERP_REFUSED``. After the write, a check_response that set ``erp.rejected``
    reports ``ERP_REFUSED`` (the ERP said no inside a 2xx); anything else is ``FAILED``. Only
    permanent errors are charged.
    """
    charged = isinstance(exc, OrderError) and exc.kind == "permanent"
    if isinstance(exc, SystemicError):
        charged = False
    if track.writing:
        landed = isinstance(exc, RetriableError) and exc.reached and exc.status != 429
        if isinstance(exc, AmbiguousWriteError) or landed:
            return F.MAY_HAVE_LANDED, False
        return F.ERP_REFUSED, charged
    if rejected and track.state is S.SENT:
        return F.ERP_REFUSED, True
    return F.FAILED, charged


class Ledger:
    """The journal state machine of one flow, for one run (or one command)."""

    def __init__(
        self,
        store: Store | None,
        flow: str,
        policy: Policy,
        redactor: Redactor,
        *,
        run_id: int | None = None,
        dry_run: bool = False,
    ) -> None:
        self.store, self.flow, self.policy = store, flow, policy
        self.redactor, self.run_id = redactor, run_id
        self.dry_run = dry_run or store is None  # no store (a trace): nothing is written

    # ---------------------------------------------------------------- reading
    def entry(self, number: str) -> JournalEntry | None:
        """The order's journal row (None without a store)."""
        return None if self.store is None else self.store.journal.entry(self.flow, number)

    def admit(self, entry: JournalEntry | None, *, replay: bool = False) -> Admission:
        """Where an order the source lists starts, or why it is skipped this run."""
        p = self.policy
        if entry is None:
            return Admission(fact=F.READ, message="read from the source")
        state = State(entry.state)
        target_moved = bool(entry.target_id and p.target_id and entry.target_id != p.target_id)
        release = False
        if state is S.QUARANTINED or (state is S.FAILED and _backing_off(entry)):
            if not replay:
                return Admission(skip=self.why_skipped(entry))
            release = True
            held = State(entry.held_state) if entry.held_state else S.FAILED
            state = held if state is S.QUARANTINED and held in (*_WRITTEN, S.SENDING) else S.FAILED
        if target_moved and state in (S.SENDING, *_WRITTEN, S.DONE):
            return self._recheck(
                F.TARGET_CHANGED,
                f"delivered to connector {entry.target_id!r}; the flow now writes to "
                f"{p.target_id!r}, which inherits no deliveries",
                release,
            )
        if state in _WRITTEN:
            return Admission(
                fact=F.RESUMED,
                message="the ERP has this order: resuming after the write",
                route=Route.RESUME,
                release=release,
            )
        if state is S.DONE:
            return self._recheck(
                F.RELISTED,
                "marked sent before, yet the source lists it as unsent again (reset by someone?)",
                release,
            )
        if state is S.SENDING:
            wait = p.settle_seconds - entry.age_seconds()
            if entry.error_kind != ErrorKind.ANSWERED and wait > 0 and not release:
                # The write may still be in flight (timeout, lost connection, crash): asking
                # the ERP now could miss an order it is about to commit.
                return Admission(skip=self.why_skipped(entry))
            # A resend settles it only when the write that may have landed was repeatable
            # itself (a key added to the flow since does not make an old write safe).
            if p.can_check or (p.safe_resend and entry.repeatable):
                how = "query_check" if p.can_check else "a repeatable write"
                return Admission(
                    fact=F.SETTLING,
                    message=f"ambiguous earlier write: {how} settles it",
                    route=Route.SETTLE,
                    release=release,
                )
            return Admission(
                fact=F.UNSETTLED,
                message="found in `sending` (the last write's outcome is unknown) and the flow "
                "has no query_check: check the ERP, then `integrator resolve`",
                route=Route.HELD,
                release=release,
            )
        return Admission(fact=F.READ, message="read from the source", release=release)

    def _recheck(self, fact: Fact, why: str, release: bool) -> Admission:
        if self.policy.can_check:
            return Admission(fact=fact, message=f"{why}: asking the ERP", release=release)
        return Admission(
            fact=fact,
            message=f"{why}; the flow has no query_check to ask the ERP: check it, then "
            "`integrator resolve NUMBER --as-sent` or `--resend`",
            route=Route.HELD,
            release=release,
        )

    def why_skipped(self, entry: JournalEntry) -> str:
        """Why a run leaves this order alone now, or "" when it would take it."""
        state = State(entry.state)
        if state is S.QUARANTINED:
            return "quarantined" + (f": {entry.last_error}" if entry.last_error else "")
        if state is S.FAILED and _backing_off(entry):
            return f"backing off until {_clock(entry.next_try or 0.0)}"
        if state is S.SENDING and entry.error_kind != ErrorKind.ANSWERED:
            wait = self.policy.settle_seconds - entry.age_seconds()
            if wait > 0:
                return (
                    f"settling until {_clock(time.time() + wait)}: the last write may still "
                    "be in flight"
                )
        return ""

    def exported(self, number: str, connector: str, connector_id: str) -> bool:
        """An export step already delivered this order to that connector (its ConnectorId;
        its Name when it has none): a connector with another ConnectorId inherits nothing."""
        if self.store is None:
            return False
        delivered = self.store.journal.delivered(
            self.flow, number, "export", connector, connector_id
        )
        return delivered is not None

    def unsettled(self, older_than: float, limit: int = 500) -> list[JournalEntry]:
        """Up to ``limit`` rows left at ``sent``/``marked`` for longer than ``older_than``
        seconds, a random sample: rows the source cannot answer for never starve the others."""
        if self.store is None:
            return []
        return self.store.journal.in_state(
            (S.SENT, S.MARKED), self.flow, older_than=older_than, limit=limit, sample=True
        )

    # ---------------------------------------------------------------- writing
    def apply(
        self,
        t: Track,
        fact: Fact,
        message: str = "",
        *,
        charged: bool = False,
        error_kind: ErrorKind | None = None,
        request: Any = None,
        response: Any = None,
        erp_ref: str | None = None,
        log: Mapping[str, str] | None = None,
        delivery: Delivery | None = None,
    ) -> State:
        """Record ``fact`` for the order and move it to the state the table decides.

        Returns the new state; raises LedgerError (and changes nothing) when the table does
        not allow the fact in the order's state.
        """
        target = TABLE.get((t.state, fact))
        refusal = self._refusal(t, fact, target)
        if refusal:
            raise LedgerError(
                f"the ledger does not allow {fact.value!r} for order {t.number} of "
                f"{self.flow} in state {t.state.value!r}: {refusal}"
            )
        assert target is not None
        new, fields = self._next(t, fact, target, charged, error_kind)
        text = self.redactor.scrub(message)
        if fields.get("last_error") is _MESSAGE:
            fields["last_error"] = text
        # The request and the ERP's answer are what a resume uses: stored as they were, and
        # masked only where they are shown. erp_ref is only ever shown: stored masked.
        if fact is F.WRITE_STARTED:
            fields["request_json"] = _stored_json(request)
            fields["repeatable"] = int(self.policy.safe_resend)  # this write, as sent
        if fact in (F.WRITE_STARTED, F.FOUND, F.RESOLVED_SENT):
            fields["target_id"] = self.policy.target_id or None  # the ERP that has it now
        if fact in (F.WRITE_ANSWERED, F.FOUND, F.RESOLVED_SENT) and response is not None:
            fields["response_json"] = _stored_json(response)
        if erp_ref is not None:
            fields["erp_ref"] = self.redactor.scrub(erp_ref)
        if t.pk is not None:
            fields.setdefault("order_pk", t.pk)
        change = Transition(new.value, text, now(), fields, fact.value)
        self._move(t, fact, new, fields)
        if self.dry_run or self.store is None:
            return new
        if fact in LIGHT:
            t.pending.append(change)
            return new
        self.store.journal.write(
            self.flow,
            t.number,
            self.run_id,
            change,
            earlier=t.pending,
            log={k: self.redactor.scrub(v) for k, v in log.items()} if log else None,
            delivery=replace(delivery, note=self.redactor.scrub(delivery.note))
            if delivery is not None
            else None,
            defer=fact in DEFERRED,
        )
        t.pending.clear()
        return new

    def _refusal(self, t: Track, fact: Fact, target: State | Rule | None) -> str:
        """Why the fact cannot apply ("" when it can): the table, then its guards."""
        if target is None:
            return "no such transition in the ledger's table"
        if fact is F.RESOLVED_SENT and not t.reached:
            return (
                "it failed before any write, so the ERP cannot have it: "
                "`integrator replay` runs it again"
            )
        unverified = t.error_kind == ErrorKind.UNVERIFIED
        if fact is F.RESOLVED_RESEND and t.held in _WRITTEN and not unverified:
            return (
                "the ERP took its write (its answer is stored): a resend would write it twice; "
                "`integrator replay` resumes it after the write"
            )
        if fact is F.RELEASED and t.state is S.QUARANTINED and unverified:
            return (
                "held because the ERP's copy could not be verified: check the ERP, then "
                "`integrator resolve --as-sent` or `--resend`"
            )
        return ""

    def _next(
        self, t: Track, fact: Fact, target: State | Rule, charged: bool, kind: ErrorKind | None
    ) -> tuple[State, dict[str, Any]]:
        """The next state and the row's fields for it."""
        p = self.policy
        fields: dict[str, Any] = {}
        failure = fact in (F.FAILED, F.ERP_REFUSED, F.MAY_HAVE_LANDED, F.INTERNAL_ERROR)
        if failure:
            fields["last_error"] = _MESSAGE
        attempts = t.attempts + (1 if charged and failure else 0)
        if target is R.KEEP:
            new = t.state
            if fact is F.FAILED:  # settling failed: nothing of ours is in flight any more
                fields["error_kind"] = ErrorKind.ANSWERED
            elif fact is F.INTERNAL_ERROR:
                fields["error_kind"] = ErrorKind.INTERNAL
        elif target is R.BACKOFF:
            fields["attempts"] = attempts
            fields["error_kind"] = kind or (ErrorKind.PERMANENT if charged else ErrorKind.RETRIABLE)
            fields["next_try"] = None
            new = S.FAILED
            if charged and attempts >= p.max_attempts:
                new = S.QUARANTINED
                fields["held_state"] = S.FAILED
            elif charged:
                fields["next_try"] = time.time() + p.backoff_seconds * 2 ** (attempts - 1)
        elif target is R.HOLD:
            fields["attempts"] = attempts
            fields["error_kind"] = kind or (ErrorKind.PERMANENT if charged else ErrorKind.RETRIABLE)
            new = t.state
            if charged and attempts >= p.max_attempts:
                new = S.QUARANTINED
                fields["held_state"] = t.state
        elif target is R.RECHECK:
            if p.can_check:
                new = S.READ
            else:
                new = S.QUARANTINED
                fields.update(
                    held_state=t.state, error_kind=ErrorKind.UNVERIFIED, last_error=_MESSAGE
                )
        elif target is R.RELEASE:
            held = t.held or S.FAILED
            new = held if held in (*_WRITTEN, S.SENDING) else S.FAILED
            fields.update(attempts=0, next_try=None, held_state=None, last_error=None)
            fields["error_kind"] = ErrorKind.ANSWERED if new is S.SENDING else None
        else:
            new = target
            if fact is F.MAY_HAVE_LANDED:
                fields["error_kind"] = kind or ErrorKind.AMBIGUOUS
            if fact is F.UNSETTLED:
                fields.update(
                    held_state=S.SENDING, error_kind=ErrorKind.AMBIGUOUS, last_error=_MESSAGE
                )
            if fact in (F.WRITE_STARTED, F.FOUND, F.DONE, F.SETTLED, F.RESOLVED_SENT):
                fields.update(error_kind=None, last_error=None, next_try=None)
            if fact in (F.RELEASED, F.RESOLVED_RESEND):
                fields.update(
                    attempts=0, next_try=None, error_kind=None, last_error=None, held_state=None
                )
            if fact is F.RESOLVED_SENT:
                fields["held_state"] = None
        return new, fields

    @staticmethod
    def _move(t: Track, fact: Fact, new: State, fields: Mapping[str, Any]) -> None:
        """The track follows the row."""
        if fact is F.WRITE_STARTED:
            t.reached = t.writing = True
        elif fact in (F.WRITE_ANSWERED, F.MAY_HAVE_LANDED, F.ERP_REFUSED):
            t.writing = False
        if fact in (F.FOUND, F.RESOLVED_SENT):
            t.reached = True
        if "attempts" in fields:
            t.attempts = int(fields["attempts"])
        if "held_state" in fields:
            t.held = State(fields["held_state"]) if fields["held_state"] else None
        if "error_kind" in fields:
            t.error_kind = fields["error_kind"]
        t.state = new

    def note(self, number: str | None, label: str, message: str, fact: Fact | None = None) -> None:
        """An event that changes no state (run-level notes, export warnings). With ``fact``
        (one the table keeps in every state: interrupted) it is recorded as that fact without
        touching the row, so it is safe beside a worker that still moves the order."""
        if fact is not None:
            assert all(TABLE.get((s, fact)) is R.KEEP for s in State), fact
        if not self.dry_run and self.store is not None:
            self.store.journal.note(
                self.flow,
                number,
                self.run_id,
                label,
                self.redactor.scrub(message),
                fact.value if fact else "",
            )


def _stored_json(value: Any) -> str:
    """A request or answer as the store keeps it: exactly as it was (a resume uses it)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _backing_off(entry: JournalEntry) -> bool:
    return bool(entry.next_try and entry.next_try > time.time())


def _clock(ts: float) -> str:
    """A unix time as an ISO time with its zone (UTC)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def describe_table() -> str:
    """The transition table as the Markdown table ARCHITECTURE.md shows (a test keeps the two
    equal)."""
    facts = [f for f in Fact if any((s, f) in TABLE for s in State)]
    lines = [
        "| fact | " + " | ".join(s.value for s in State) + " |",
        "|---|" + "---|" * len(State),
    ]
    for f in facts:
        cells = []
        for s in State:
            target = TABLE.get((s, f))
            if target is None:
                cells.append("")
            elif isinstance(target, Rule):
                cells.append(target.name)
            else:
                cells.append("=" if target is s else target.value)
        lines.append(f"| {f.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""The ledger's table, in process: every (state, fact) pair, each rule, each guard, what is
written when, and where an order starts. No sandbox."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.connectors.redact import Redactor
from integrator.errors import AmbiguousWriteError, PermanentError, RetriableError, SystemicError
from integrator.state.journal import Delivery, JournalEntry
from integrator.state.ledger import (
    TABLE,
    ErrorKind,
    Fact,
    Ledger,
    LedgerError,
    Policy,
    Route,
    Rule,
    State,
    Track,
    classify,
    describe_table,
)
from integrator.state.store import Store

ROOT = Path(__file__).resolve().parents[2]
S, F = State, Fact
POLICY = Policy(can_check=True, max_attempts=3, backoff_seconds=10, settle_seconds=60,
                target_id="erp-1")  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/state.db")
    s.runs.start("f")
    yield s
    s.close()


def ledger(store: Store | None = None, **policy: object) -> Ledger:
    p = Policy(**{**POLICY.__dict__, **policy})
    return Ledger(store, "f", p, Redactor(["s3cret-value"]), run_id=1)


def track(state: State, **kw: object) -> Track:
    t = Track("100", "1", state)
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def entry(state: State, age: float = 0.0, **kw: object) -> JournalEntry:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    fields: dict[str, object] = {"updated_at": at, **kw}
    return JournalEntry("f", "100", "1", state.value, **fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the whole table
@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("fact", list(Fact))
def test_every_state_and_fact(state: State, fact: Fact) -> None:
    """A pair in the table moves the order where the table says (rules checked below); a pair
    outside it is a LedgerError and changes nothing."""
    t = track(state, reached=True, held=S.FAILED if state is S.QUARANTINED else None)
    target = TABLE.get((state, fact))
    if target is None:
        with pytest.raises(LedgerError, match="does not allow"):
            ledger().apply(t, fact, "x")
        assert t.state is state and t.pending == []
        return
    new = ledger().apply(t, fact, "x")
    assert t.state is new
    if isinstance(target, State):
        assert new is target
    elif target is Rule.KEEP:
        assert new is state
    elif target is Rule.BACKOFF:
        assert new is S.FAILED  # uncharged here
    elif target is Rule.HOLD:
        assert new is state
    elif target is Rule.RECHECK:
        assert new is S.READ  # the policy can ask the ERP
    elif target is Rule.RELEASE:
        assert new is S.FAILED  # held after a failure


def test_a_write_never_starts_once_the_erp_has_the_order() -> None:
    """The invariant everything rests on: no write from sent, marked or done."""
    for state in (S.SENT, S.MARKED, S.DONE, S.QUARANTINED):
        with pytest.raises(LedgerError):
            ledger().apply(track(state), F.WRITE_STARTED, "POST")


def test_architecture_md_shows_the_table() -> None:
    """ARCHITECTURE.md carries the table as the code has it."""
    assert describe_table() in (ROOT / "ARCHITECTURE.md").read_text()


def test_only_the_ledger_writes_journal_states() -> None:
    """No module but the ledger calls the journal's write, and none outside the store writes
    the journal table itself (commands and stages report facts)."""
    writes = re.compile(
        r"journal\.write\(|journal\.update\(|insert\(journal|update\(journal|"
        r"INTO journal|UPDATE journal",
        re.IGNORECASE,
    )
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "integrator").rglob("*.py")
        if writes.search(p.read_text())
        and p.relative_to(ROOT).as_posix()
        not in ("integrator/state/ledger.py", "integrator/state/journal.py",
                "integrator/state/store.py", "integrator/state/migrations.py")
    ]  # fmt: skip
    assert offenders == []


# ---------------------------------------------------------------------------- the rules
def test_backoff_charges_only_failures_of_the_order() -> None:
    lg = ledger()
    t = track(S.READ)
    assert lg.apply(t, F.FAILED, "503", charged=False) is S.FAILED
    assert t.attempts == 0
    t.state = S.READ
    assert lg.apply(t, F.FAILED, "400", charged=True) is S.FAILED and t.attempts == 1
    t.state = S.READ
    lg.apply(t, F.FAILED, "400", charged=True)
    t.state = S.READ
    assert lg.apply(t, F.FAILED, "400", charged=True) is S.QUARANTINED
    assert t.attempts == 3 and t.held is S.FAILED


def test_backoff_waits_longer_each_time(store: Store) -> None:
    lg = ledger(store)
    t = track(S.READ)
    lg.apply(t, F.FAILED, "400", charged=True)
    e1 = store.journal.entry("f", "100")
    assert e1 is not None and e1.next_try is not None
    assert 9 < e1.next_try - time.time() <= 10
    t.state = S.READ
    lg.apply(t, F.FAILED, "400", charged=True)
    e2 = store.journal.entry("f", "100")
    assert e2 is not None and e2.next_try is not None and 19 < e2.next_try - time.time() <= 20
    assert lg.why_skipped(e2).startswith("backing off until ")


def test_hold_keeps_what_the_erp_has_and_release_resumes_after_the_write() -> None:
    lg = ledger(max_attempts=2)
    t = track(S.SENT)
    assert lg.apply(t, F.FAILED, "mark 400", charged=True) is S.SENT
    assert lg.apply(t, F.FAILED, "mark 400", charged=True) is S.QUARANTINED
    assert t.held is S.SENT
    with pytest.raises(LedgerError, match="would write it twice"):
        lg.apply(t, F.RESOLVED_RESEND, "resend")
    assert lg.apply(t, F.RELEASED, "by ops") is S.SENT and t.attempts == 0


def test_relisted_after_done_is_asked_or_held() -> None:
    assert ledger().apply(track(S.DONE), F.RELISTED, "again") is S.READ
    lg = ledger(can_check=False)
    t = track(S.DONE, reached=True)
    assert lg.apply(t, F.RELISTED, "again") is S.QUARANTINED
    assert t.held is S.DONE and t.error_kind == ErrorKind.UNVERIFIED
    with pytest.raises(LedgerError, match="could not be verified"):
        lg.apply(t, F.RELEASED, "by ops")
    assert lg.apply(t, F.RESOLVED_RESEND, "not in the ERP") is S.FAILED  # a person checked


def test_resolve_as_sent_needs_a_write() -> None:
    with pytest.raises(LedgerError, match="failed before any write"):
        ledger().apply(track(S.FAILED), F.RESOLVED_SENT, "by ops")
    assert ledger().apply(track(S.FAILED, reached=True), F.RESOLVED_SENT, "x") is S.SENT


def test_unsettled_sending_is_held_and_release_settles_it() -> None:
    lg = ledger(can_check=False)
    t = track(S.SENDING)
    assert lg.apply(t, F.UNSETTLED, "no query_check") is S.QUARANTINED and t.held is S.SENDING
    assert lg.apply(t, F.RELEASED, "by ops") is S.SENDING
    assert t.error_kind == ErrorKind.ANSWERED  # settled at once, nothing waits


# --------------------------------------------------------------- what is written, and when
def test_light_facts_ride_on_the_next_durable_one(store: Store) -> None:
    lg = ledger(store)
    t = track(S.NEW)
    lg.apply(t, F.READ, "read")
    lg.apply(t, F.NOT_FOUND, "not there")
    assert store.journal.entry("f", "100") is None  # nothing committed yet
    lg.apply(t, F.WRITE_STARTED, "POST erp", request={"n": 1, "password": "s3cret-value"})
    e = store.journal.entry("f", "100")
    assert e is not None and e.state == "sending" and e.target_id == "erp-1"
    # a resume gives the request to check_response: stored as sent, masked where shown
    assert e.request == {"n": 1, "password": "s3cret-value"}
    events = store.journal.history("100")["events"]
    assert [(x["state"], x["fact"]) for x in events] == [
        ("read", "read"), ("checked", "not_found"), ("sending", "write_started"),
    ]  # fmt: skip


def test_done_is_deferred_and_flushed(store: Store) -> None:
    lg = ledger(store)
    t = track(S.SENDING)
    lg.apply(t, F.WRITE_ANSWERED, "201", response={"id": "E1"})
    lg.apply(t, F.DONE, "complete", log={"log.x": "the s3cret-value"})
    e = store.journal.entry("f", "100")
    assert e is not None and e.state == "sent"
    store.flush()
    e = store.journal.entry("f", "100")
    assert e is not None and e.state == "done" and e.response == {"id": "E1"}
    assert store.journal.history("100")["log"][0]["value"] == "the ***"


def test_masking_never_changes_the_stored_answer_a_resume_uses(store: Store) -> None:
    """A 4-character secret inside the ERP's reference (a Redactor built directly: validate
    refuses such a configured secret, a login or channel.conf may still teach one): the
    stored answer stays exact for the resume; only the shown reference and messages mask it."""
    lg = Ledger(store, "f", POLICY, Redactor(["0000"]), run_id=1)
    t = track(S.SENDING)
    answer = {"id": "ERP-0000002", "lines": [{"line_id": "ERP-0000002-1"}]}
    lg.apply(t, F.WRITE_ANSWERED, "201 ERP-0000002", response=answer)
    lg.apply(t, F.MARKED, "marked", erp_ref="ERP-0000002")
    note = "produced to Kafka u:0000@broker:9092"
    lg.apply(t, F.EXPORTED, "exported", delivery=Delivery("export", "Kafka", "k", note))
    lg.apply(t, F.DONE, "complete")
    store.flush()
    e = store.journal.entry("f", "100")
    assert e is not None and e.response == answer  # what a resume writes back
    assert e.erp_ref == "ERP-***002"  # only ever shown
    history = store.journal.history("100")
    assert [x["message"] for x in history["events"]] == [
        "201 ERP-***002", "marked", "exported", "complete",
    ]  # fmt: skip
    assert [d["note"] for d in history["deliveries"]] == ["produced to Kafka u:***@broker:9092"]


def test_a_dry_ledger_writes_nothing(store: Store) -> None:
    lg = Ledger(store, "f", POLICY, Redactor(), dry_run=True)
    t = track(S.NEW)
    lg.apply(t, F.READ)
    lg.apply(t, F.WRITE_STARTED, request={})
    assert t.state is S.SENDING and store.journal.entry("f", "100") is None


# ------------------------------------------------------------------ where an order starts
def test_admission() -> None:
    lg = ledger()
    assert lg.admit(None).fact is F.READ
    assert lg.admit(entry(S.QUARANTINED, last_error="400")).skip == "quarantined: 400"
    backing = entry(S.FAILED, next_try=time.time() + 30)
    assert lg.admit(backing).skip.startswith("backing off until")
    assert lg.admit(entry(S.FAILED)).fact is F.READ
    young = lg.admit(entry(S.SENDING, age=1, error_kind="ambiguous"))
    assert young.skip.startswith("settling until")
    answered = lg.admit(entry(S.SENDING, age=1, error_kind=ErrorKind.ANSWERED))
    assert answered.fact is F.SETTLING and answered.route is Route.SETTLE
    old = ledger(can_check=False).admit(entry(S.SENDING, age=120))
    assert old.fact is F.UNSETTLED and old.route is Route.HELD
    keyed = ledger(safe_resend=True, can_check=False)
    assert keyed.admit(entry(S.SENDING, age=120, repeatable=True)).route is Route.SETTLE
    # a key added to the flow since the write does not make that write safe to repeat
    assert keyed.admit(entry(S.SENDING, age=120, repeatable=False)).route is Route.HELD
    sent = lg.admit(entry(S.SENT, target_id="erp-1"))
    assert sent.fact is F.RESUMED and sent.route is Route.RESUME
    assert lg.admit(entry(S.SENT)).route is Route.RESUME  # no target recorded (0.1.0): same
    assert lg.admit(entry(S.DONE, target_id="erp-1")).fact is F.RELISTED
    moved = lg.admit(entry(S.MARKED, target_id="erp-old"))
    assert moved.fact is F.TARGET_CHANGED and "erp-old" in moved.message


def test_replay_releases_what_is_held() -> None:
    lg = ledger()
    held = entry(S.QUARANTINED, held_state="sent")
    a = lg.admit(held, replay=True)
    assert a.release and a.fact is F.RESUMED and a.route is Route.RESUME
    a = lg.admit(entry(S.FAILED, next_try=time.time() + 30), replay=True)
    assert a.release and a.fact is F.READ


# ----------------------------------------------------------------- failures into facts
def test_classify() -> None:
    writing = track(S.SENDING, writing=True)
    assert classify(AmbiguousWriteError("timeout"), writing) == (F.MAY_HAVE_LANDED, False)
    assert classify(PermanentError("400"), writing) == (F.ERP_REFUSED, True)
    assert classify(RetriableError("429", reached=False), writing) == (F.ERP_REFUSED, False)
    assert classify(SystemicError("401"), writing) == (F.ERP_REFUSED, False)
    assert classify(PermanentError("bad script"), track(S.READ)) == (F.FAILED, True)
    assert classify(RetriableError("503"), track(S.CHECKED)) == (F.FAILED, False)
    assert classify(PermanentError("no"), track(S.SENT), rejected=True) == (F.ERP_REFUSED, True)
    assert classify(PermanentError("mark"), track(S.SENT)) == (F.FAILED, True)

"""The state store's parts (journal storage, group commit, locks, runs, events queue), on a
real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.services import fresh_database

from integrator.errors import FatalError
from integrator.state.clock import now
from integrator.state.journal import Transition
from integrator.state.runs import RunStatus
from integrator.state.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/state.db")
        s.runs.start("f")
        yield s
        s.close()
        return
    with fresh_database() as url:
        s = Store(url)
        s.runs.start("f")
        yield s
        s.close()


def record(
    store: Store,
    number: str,
    state: str,
    message: str = "",
    *,
    earlier: list[Transition] | None = None,
    defer: bool = False,
    log: dict[str, str] | None = None,
    **fields: object,
) -> None:
    """A journal write as the ledger makes it."""
    store.journal.write(
        "f",
        number,
        1,
        Transition(state, message, now(), fields, "test"),
        earlier=earlier or [],
        log=log,
        defer=defer,
    )


def test_record_writes_earlier_transitions_events_and_log_at_once(store: Store) -> None:
    at = dt.datetime.now(dt.UTC)
    record(
        store,
        "1",
        "sending",
        "POST erp",
        earlier=[Transition("read", "read", at, {}), Transition("checked", "not found", at, {})],
        order_pk="10",
        request_json='{"a": 1}',
    )
    entry = store.journal.entry("f", "1")
    assert entry is not None
    assert (entry.state, entry.order_pk, entry.request, entry.attempts) == (
        "sending",
        "10",
        {"a": 1},
        0,
    )
    record(store, "1", "sent", "201", log={"log.x": "y"}, response_json='{"id": 5}')
    entry = store.journal.entry("f", "1")
    assert entry is not None and entry.request == {"a": 1} and entry.response == {"id": 5}
    history = store.journal.history("1")
    assert [e["state"] for e in history["events"]] == ["read", "checked", "sending", "sent"]
    assert [(r["key"], r["value"]) for r in history["log"]] == [("log.x", "y")]


def test_deferred_record_rides_on_the_next_transaction(store: Store) -> None:
    record(store, "1", "sent", "ok")
    record(store, "1", "done", "complete", defer=True)
    entry = store.journal.entry("f", "1")
    assert entry is not None and entry.state == "sent"  # not committed yet
    record(store, "2", "sending", "another order's durable change")
    entry = store.journal.entry("f", "1")
    assert entry is not None and entry.state == "done"
    record(store, "2", "done", "complete", defer=True)
    store.flush()
    entry = store.journal.entry("f", "2")
    assert entry is not None and entry.state == "done"


def test_concurrent_records_from_many_threads(store: Store) -> None:
    def one(i: int) -> None:
        record(store, str(i), "sending", "w")
        record(store, str(i), "sent", "w")
        record(store, str(i), "done", "w", defer=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    store.flush()
    assert store.journal.count_states("f") == {"done": 200}
    assert len(store.journal.history("17")["events"]) == 3


def test_gather_runs_all_and_raises_the_first_error_after_all_end() -> None:
    from integrator.pipeline.context import RunContext

    ended: list[int] = []
    lock = threading.Lock()

    def ok(i: int) -> int:
        with lock:
            ended.append(i)
        return i

    def boom() -> int:
        raise ValueError("boom")

    run = RunContext.__new__(RunContext)
    run.fetch_pool = ThreadPoolExecutor(4)
    try:
        assert run.gather([lambda: ok(1), lambda: ok(2), lambda: ok(3)]) == [1, 2, 3]
        assert run.gather([]) == []
        ended.clear()
        with pytest.raises(ValueError, match="boom"):
            run.gather([boom, lambda: ok(5), lambda: ok(6)])
        assert sorted(ended) == [5, 6]
    finally:
        run.fetch_pool.shutdown()


def test_deferred_writes_wait_at_most_defer_seconds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import integrator.state.store as module

    monkeypatch.setattr(module, "DEFER_SECONDS", 0.0)
    record(store, "1", "done", "complete", defer=True)
    entry = store.journal.entry("f", "1")
    assert entry is not None and entry.state == "done"


def test_flow_lock_is_exclusive_across_stores(store: Store) -> None:
    """A second holder (another process would have its own Store) is refused; then it is free."""
    other = Store(store.url)
    try:
        with store.locks.hold("f"):
            with pytest.raises(FatalError, match="already running"), other.locks.hold("f"):
                pass
            with other.locks.hold("g"):  # another flow is independent
                pass
        with other.locks.hold("f"):
            pass
    finally:
        other.close()


def test_a_killed_holders_lock_is_released(store: Store) -> None:
    """SIGKILL the process holding the lock: the kernel (flock) or the server (the session
    ends) releases it; the lock is never held forever."""
    code = (
        "import sys, time\n"
        "from integrator.state.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "with s.locks.hold('f'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, store.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(FatalError), store.locks.hold("f"):
            pass
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with store.locks.hold("f"):
                return
        except FatalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_runs_left_running_are_closed_as_interrupted(store: Store) -> None:
    """Holding the flow's lock proves a `running` run's process is gone: it is closed."""
    other = store.runs.start("g")
    assert store.runs.close_abandoned("f") == 1
    rows = {r["id"]: r for r in store.runs.latest()}
    assert rows[1]["status"] == RunStatus.INTERRUPTED and rows[1]["ended_at"] is not None
    assert rows[other]["status"] == RunStatus.RUNNING  # another flow's run is not touched
    store.runs.finish(other, RunStatus.PARTIAL, 3, 1, {"quarantined": 2})
    row = store.runs.latest("g")[0]
    assert (row["orders_skipped"], row["skipped_json"]) == (2, '{"quarantined": 2}')


def test_event_queue_claims_each_order_once_and_survives_a_dead_run(store: Store) -> None:
    """Pending orders are claimed by one run; a run that died gives them back."""
    for oid in ("a", "b", "a"):
        store.pending.add("f", oid)
    assert store.pending.waiting("f") == 3 and store.pending.flows_waiting() == ["f"]
    assert store.pending.claim("f", 7) == ["a", "b"]
    assert store.pending.claim("f", 8) == []  # taken
    assert store.pending.release_abandoned("f") == 3  # run 7 died
    assert store.pending.claim("f", 9) == ["a", "b"]
    store.pending.done("f", 9)
    assert store.pending.waiting("f") == 0 and store.pending.claim("f", 10) == []

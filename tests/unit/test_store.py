"""The state store and the run context's ledger helpers, on a real SQLite file."""

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
from pg import fresh_database

from integrator.errors import FatalError
from integrator.state.store import Store, Transition


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/state.db")
        s.start_run("f")
        yield s
        s.close()
        return
    with fresh_database() as url:
        s = Store(url)
        s.start_run("f")
        yield s
        s.close()


def test_record_writes_earlier_transitions_events_and_log_at_once(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    store.record(
        "f",
        "1",
        1,
        "sending",
        "POST erp",
        earlier=[Transition("read", "read", now, {}), Transition("checked", "not found", now, {})],
        order_pk="10",
        request={"a": 1},
    )
    entry = store.entry("f", "1")
    assert entry is not None
    assert (entry.state, entry.order_pk, entry.request, entry.attempts) == (
        "sending",
        "10",
        {"a": 1},
        0,
    )
    store.record("f", "1", 1, "sent", "201", log={"log.x": "y"}, response={"id": 5})
    entry = store.entry("f", "1")
    assert entry is not None and entry.request == {"a": 1} and entry.response == {"id": 5}
    history = store.order_history("1")
    assert [e["state"] for e in history["events"]] == ["read", "checked", "sending", "sent"]
    assert [(r["key"], r["value"]) for r in history["log"]] == [("log.x", "y")]


def test_deferred_record_rides_on_the_next_transaction(store: Store) -> None:
    store.record("f", "1", 1, "sent", "ok")
    store.record("f", "1", 1, "done", "complete", defer=True)
    entry = store.entry("f", "1")
    assert entry is not None and entry.state == "sent"  # not committed yet
    store.record("f", "2", 1, "sending", "another order's durable change")
    entry = store.entry("f", "1")
    assert entry is not None and entry.state == "done"
    store.record("f", "2", 1, "done", "complete", defer=True)
    store.flush()
    entry = store.entry("f", "2")
    assert entry is not None and entry.state == "done"


def test_concurrent_records_from_many_threads(store: Store) -> None:
    def one(i: int) -> None:
        store.record("f", str(i), 1, "sending", "w")
        store.record("f", str(i), 1, "sent", "w")
        store.record("f", str(i), 1, "done", "w", defer=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    store.flush()
    assert store.count_states("f") == {"done": 200}
    assert len(store.order_history("17")["events"]) == 3


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
    store.record("f", "1", 1, "done", "complete", defer=True)
    entry = store.entry("f", "1")
    assert entry is not None and entry.state == "done"


def test_flow_lock_is_exclusive_across_stores(store: Store) -> None:
    """A second holder (another process would have its own Store) is refused; then it is free."""
    other = Store(store.url)
    try:
        with store.flow_lock("f"):
            with pytest.raises(FatalError, match="already running"), other.flow_lock("f"):
                pass
            with other.flow_lock("g"):  # another flow is independent
                pass
        with other.flow_lock("f"):
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
        "with s.flow_lock('f'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, store.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(FatalError), store.flow_lock("f"):
            pass
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with store.flow_lock("f"):
                return
        except FatalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

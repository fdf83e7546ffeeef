"""The console's queries (``integrator/state/queries.py``) on a real SQLite store: each is
answered by an index, and the figures are what the runs say."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from support.services import fresh_database

from integrator.state.entries import Transition
from integrator.state.queries import Queries, RunFilter
from integrator.state.runs import RunStatus
from integrator.state.schema import journal
from integrator.state.store import Store


def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    at = dt.datetime.now(dt.UTC)
    with store.transaction(deferred=False) as c:
        c.execute(
            insert(journal),
            [
                {
                    "flow": f"f{i % 3}",
                    "order_number": f"N{i:05d}",
                    "state": s,
                    "attempts": 0,
                    "updated_at": at,
                }
                for i in range(3000)
                for s in (("quarantined" if i % 100 == 0 else "done"),)
            ],
        )
    return store


def _plan(store: Store, sql: str, **params: object) -> str:
    with store.engine.connect() as c:
        rows = c.execute(text(f"EXPLAIN QUERY PLAN {sql}"), params).all()
    return " | ".join(str(r[-1]) for r in rows)


def test_order_search_and_state_counts_use_indexes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        by_number = _plan(store, "SELECT flow FROM journal WHERE order_number = :n", n="N00001")
        assert "ix_journal_number" in by_number, by_number
        prefix = _plan(
            store,
            "SELECT flow FROM journal WHERE order_number >= :a AND order_number < :b",
            a="N0001",
            b="N0002",
        )
        assert "ix_journal_number" in prefix, prefix
        counts = _plan(
            store, "SELECT state, count(*) FROM journal WHERE flow = :f GROUP BY state", f="f1"
        )
        assert "ix_journal_flow_state" in counts and "SCAN journal " not in counts + " ", counts
        q = Queries(store)
        assert [o["order_number"] for o in q.find_orders("N0000")] == [
            f"N{i:05d}" for i in range(10)
        ]
        assert q.find_orders("N00001", limit=1)[0]["order_number"] == "N00001"
        assert q.find_orders("") != [] and q.find_orders("zzz") == []
        (f1,) = q.flow_figures(["f1"])
        assert f1.quarantined == 10 and f1.states == {"done": 990, "quarantined": 10}
        assert f1.last_run is None and f1.error_rate is None and f1.window == 0
        groups = q.failures()
        assert sum(g["orders"] for g in groups) == 30
    finally:
        store.close()


def test_figures_over_the_window(tmp_path: Path) -> None:
    check_figures(Store(f"sqlite:///{tmp_path / 'state.db'}"))


@pytest.mark.services
def test_figures_and_search_on_postgresql() -> None:
    with fresh_database() as url:
        store = Store(url)
        at = dt.datetime.now(dt.UTC)
        for number in ("A-100", "A-101", "A-2", "B-100"):
            store.journal.write(
                "f", number, None, Transition("quarantined", "x", at, {"last_error": "x"}, "failed")
            )
        q = Queries(store)
        assert [o["order_number"] for o in q.find_orders("A-10")] == ["A-100", "A-101"]
        assert q.timeline("A-2")["events"][0]["message"] == "x"
        assert q.failures()[0]["orders"] == 4
        check_figures(store)


def check_figures(store: Store) -> None:
    try:
        statuses = [RunStatus.OK, RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.OK]
        for i, status in enumerate(statuses):
            rid = store.runs.start("f")
            store.runs.finish(rid, status, 1, 0, {}, None, oldest_unsent_seconds=10.0 * i or None)
        store.runs.start("f")  # running: not in the window, but the last run
        dry = store.runs.start("f", dry_run=True)
        store.runs.finish(dry, RunStatus.FAILED, 0, 0, {})
        q = Queries(store)
        (f,) = q.flow_figures(["f"], window=3)
        assert f.window == 3 and f.error_rate == 2 / 3
        assert f.last_run is not None and f.last_run["status"] == "failed"  # the dry run's
        assert f.oldest_unsent_seconds == 30.0 and f.oldest_unsent_run == 4
        (f,) = q.flow_figures(["f"], window=20)
        assert f.window == 4 and f.error_rate == 0.5
        assert [r["id"] for r in q.runs(RunFilter(status="ok"))] == [4, 1]
        assert [r["id"] for r in q.runs(RunFilter(before=3, limit=1))] == [2]
    finally:
        store.close()

"""Schema migrations on a store made by the previous release (0.1.0), on SQLite and on a real
PostgreSQL server: its data survives, what 0.1.0 did not record is inferred, and it runs."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sqlite3
import threading
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, insert, inspect, text
from support.services import fresh_database

from integrator.connectors.redact import Redactor
from integrator.errors import FatalError
from integrator.state.ledger import Fact, Ledger, Policy, Route, Track
from integrator.state.migrations import VERSION
from integrator.state.store import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def v1_schema() -> ModuleType:
    """``integrator/state/schema.py`` as release 0.1.0 shipped it."""
    spec = importlib.util.spec_from_file_location("schema_0_1_0", FIXTURES / "schema_0_1_0.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqlite_v1(tmp_path: Path) -> str:
    """A SQLite store written by 0.1.0's own code (dumped in tests/fixtures)."""
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as c:
        c.executescript((FIXTURES / "store_0.1.0.sqlite.sql").read_text())
    return f"sqlite:///{db}"


def postgres_v1(url: str) -> None:
    """The same kind of store on PostgreSQL, made with 0.1.0's schema."""
    old = v1_schema()
    engine = create_engine(url)
    at = dt.datetime.now(dt.UTC)
    with engine.begin() as c:
        old.metadata.create_all(c)
        c.execute(insert(old.runs).values(
            id=1, flow="order_flow", started_at=at, status="partial", orders_ok=1,
            orders_failed=3, orders_skipped=0, dry_run=0,
        ))  # fmt: skip
        rows = [
            ("202611000001", "done", None, '{"id": "E1"}', None),
            ("202611000002", "sent", None, '{"id": "E2"}', None),
            ("202611000003", "quarantined", "ambiguous", None, '{"n": 3}'),
            ("202611000004", "quarantined", "permanent", '{"id": "E4"}', '{"n": 4}'),
            ("202611000005", "quarantined", "permanent", None, None),
        ]
        for number, state, kind, response, request in rows:
            c.execute(insert(old.journal).values(
                flow="order_flow", order_number=number, order_pk=number[-1], state=state,
                attempts=0, error_kind=kind, response_json=response, request_json=request,
                updated_at=at, run_id=1,
            ))  # fmt: skip
        c.execute(insert(old.events).values(
            flow="order_flow", order_number="202611000001", run_id=1, at=at,
            state="Exported", message="Webhook: 202",
        ))  # fmt: skip
    engine.dispose()


def check_migrated(store: Store) -> None:
    assert store.found_version == 1
    with store.engine.connect() as c:
        assert c.execute(text("SELECT version FROM schema_version")).scalar() == VERSION
    # v3: the run's oldest unsent age, the console's indexes
    found = inspect(store.engine)
    assert "oldest_unsent_seconds" in {col["name"] for col in found.get_columns("runs")}
    assert {"ix_journal_number", "ix_journal_flow_state"} <= {
        str(i["name"]) for i in found.get_indexes("journal")
    }
    j = store.journal
    assert j.count_states("order_flow")["quarantined"] == 3
    numbers = ("202611000003", "202611000004", "202611000005")
    held = {n: getattr(j.entry("order_flow", n), "held_state", None) for n in numbers}
    assert held == {"202611000003": "sending", "202611000004": "sent", "202611000005": "failed"}
    done = j.entry("order_flow", "202611000001")
    assert done is not None and done.state == "done" and done.target_id is None
    # 0.1.0's export event is a delivery now: an upgrade exports nothing twice
    ledger = Ledger(store, "order_flow", Policy(can_check=True, target_id="erp"), Redactor())
    assert ledger.exported("202611000001", "Webhook", "")
    assert ledger.exported("202611000001", "Webhook", "wh-1")  # 0.1.0 kept no ConnectorId
    assert not ledger.exported("202611000001", "Kafka", "")
    # and the migrated rows work: a sent one resumes, a held-after-write one is released to sent
    sent = j.entry("order_flow", "202611000002")
    assert ledger.admit(sent).route is Route.RESUME
    q = j.entry("order_flow", "202611000004")
    assert q is not None
    ledger.apply(Track.of(q.order_number, q.order_pk, q), Fact.RELEASED, "after upgrade")
    e = j.entry("order_flow", "202611000004")
    assert e is not None and e.state == "sent"


def test_a_sqlite_store_of_0_1_0_is_migrated(tmp_path: Path) -> None:
    url = sqlite_v1(tmp_path)
    store = Store(url)
    try:
        check_migrated(store)
    finally:
        store.close()
    again = Store(url)  # already migrated: opened as it is
    try:
        assert again.found_version == VERSION
    finally:
        again.close()


@pytest.mark.services
def test_a_postgresql_store_of_0_1_0_is_migrated() -> None:
    with fresh_database() as url:
        postgres_v1(url)
        store = Store(url)
        try:
            check_migrated(store)
        finally:
            store.close()


def test_two_processes_opening_an_old_store_migrate_it_once(tmp_path: Path) -> None:
    url = sqlite_v1(tmp_path)
    found: list[int] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            s = Store(url)
            found.append(s.found_version)
            s.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(found) == [1, VERSION, VERSION, VERSION]


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    Store(url).close()
    with sqlite3.connect(tmp_path / "state.db") as c:
        c.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(FatalError, match="schema version 99, written by a newer integrator"):
        Store(url)

"""The daemons' heartbeat rows (``state/daemons.py``), on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, update
from support.services import fresh_database

from integrator.alarms.store import Lease
from integrator.state.daemons import URL_MAX, Daemons, daemon_id
from integrator.state.schema import leases
from integrator.state.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/state.db")
        yield s
        s.close()
        return
    with fresh_database() as url:
        s = Store(url)
        yield s
        s.close()


def _statements(store: Store) -> list[str]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(store.engine, "before_cursor_execute", count)
    return seen


def test_a_heartbeat_is_one_small_write(store: Store) -> None:
    d, key = Daemons(store), daemon_id()
    assert d.live() == []
    d.beat(key, "http://127.0.0.1:9108/", 30)
    seen = _statements(store)
    for _ in range(5):
        d.beat(key, "http://127.0.0.1:9108/", 30)
    assert [s for s in seen if s not in ("BEGIN", "COMMIT")] == ["UPDATE"] * 5
    (one,) = d.live()
    assert one.key == key and one.url == "http://127.0.0.1:9108/"
    assert time.time() + 25 < one.until <= time.time() + 30


def test_live_daemons_only_latest_first(store: Store) -> None:
    d = Daemons(store)
    a, b, c = daemon_id(), daemon_id(), daemon_id()
    d.beat(a, "http://127.0.0.1:1/", 10)
    d.beat(b, "http://127.0.0.1:2/", 60)
    d.beat(c, None, 30)  # serves no console
    assert [(x.key, x.url) for x in d.live()] == [
        (b, "http://127.0.0.1:2/"),
        (c, None),
        (a, "http://127.0.0.1:1/"),
    ]
    d.gone(b)
    assert [x.key for x in d.live()] == [c, a]
    with store.transaction(deferred=False) as conn:  # a's heartbeat runs out (no sleep)
        conn.execute(update(leases).where(leases.c.name == f"daemon:{a}").values(expires_at=1.0))
    assert [x.key for x in d.live()] == [c]
    d.beat(a, "http://127.0.0.1:1/", 10)  # a late heartbeat brings it back
    assert {x.key for x in d.live()} == {a, c}


def test_other_leases_are_no_daemons(store: Store) -> None:
    """The alarms' lease shares the table: neither side takes the other's row."""
    lease = Lease(store)
    assert lease.take(30)
    with store.transaction(deferred=False) as conn:
        conn.execute(insert(leases).values(name="daemon%", holder="x", expires_at=2e9))
        conn.execute(insert(leases).values(name="daemonX", holder="x", expires_at=2e9))
    d, key = Daemons(store), daemon_id()
    assert d.live() == []
    d.beat(key, "http://127.0.0.1:9/", 30)
    assert [x.key for x in d.live()] == [key]
    assert lease.holds() and lease.take(30)  # the alarms' lease untouched
    d.gone(key)
    assert lease.holds()


def test_a_url_longer_than_the_column_is_recorded_as_none(store: Store) -> None:
    """PostgreSQL would refuse it (VARCHAR(200)): the daemon is recorded, without a link."""
    d, key = Daemons(store), daemon_id()
    long = "https://" + "a" * (URL_MAX) + ".example/"
    d.beat(key, long, 30)
    (one,) = d.live()
    assert one.url is None

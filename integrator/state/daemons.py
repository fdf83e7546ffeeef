"""Which daemons run over this store now, and where their consoles answer.

A daemon keeps one row of ``leases`` while it runs: its name is ``daemon:`` and the daemon's
own id, its holder the URL of the console the daemon serves (empty: it serves none), and its
expiry the daemon's last heartbeat plus the time within which it promised to beat again. An
orderly stop deletes the row; a daemon killed without one is forgotten when its row expires.
A standalone console reads :meth:`Daemons.live` to link to the daemon that runs the flows.

One small write per heartbeat (an ``UPDATE`` of one row), never one per order.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update

from integrator.state.schema import leases

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["PREFIX", "URL_MAX", "DaemonSeen", "Daemons", "daemon_id"]

PREFIX = "daemon:"
URL_MAX = 200  # the ``holder`` column's length: a longer URL is not recorded


def daemon_id() -> str:
    """A daemon's id in the store: random, so that a restarted daemon (or a reused pid on
    another host) is never taken for another."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class DaemonSeen:
    """A daemon whose heartbeat has not expired: its id, its console's URL as it wrote it
    (None: it serves no console), and until when (unix time) its last heartbeat holds."""

    key: str
    url: str | None
    until: float


class Daemons:
    """The daemons' heartbeat rows (in ``leases``, named ``daemon:<id>``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def beat(self, key: str, url: str | None, seconds: float) -> None:
        """Record that daemon ``key`` runs, its console at ``url``, for ``seconds`` from now:
        one ``UPDATE`` of its row (an ``INSERT`` the first time)."""
        name, holder = PREFIX + key, url if url and len(url) <= URL_MAX else ""
        until = time.time() + seconds
        with self.store.transaction(deferred=False) as c:
            found = c.execute(
                update(leases).where(leases.c.name == name).values(holder=holder, expires_at=until)
            ).rowcount
            if not found:
                c.execute(insert(leases).values(name=name, holder=holder, expires_at=until))

    def gone(self, key: str) -> None:
        """Daemon ``key`` has stopped: its row is deleted."""
        with self.store.transaction(deferred=False) as c:
            c.execute(delete(leases).where(leases.c.name == PREFIX + key))

    def live(self) -> list[DaemonSeen]:
        """The daemons whose heartbeat holds now, the latest heartbeat first."""
        now = time.time()
        q = (
            select(leases.c.name, leases.c.holder, leases.c.expires_at)
            .where(leases.c.name.startswith(PREFIX, autoescape=True), leases.c.expires_at > now)
            .order_by(leases.c.expires_at.desc())
        )
        with self.store.engine.connect() as c:
            rows = c.execute(q).all()
        return [
            DaemonSeen(key=str(r[0])[len(PREFIX) :], url=str(r[1] or "") or None, until=float(r[2]))
            for r in rows
        ]

"""The daemon a standalone console can reach: the one whose heartbeat the store holds.

A standalone console reads the store only: "run now" and the live view of a run are the
daemon's. When a daemon runs over the same store, its heartbeat row (``state/daemons.py``)
names its console's URL, and the standalone console links there instead of saying that they
need the daemon. The URL comes from the store, so it is checked before it becomes a link:
``http``/``https``, a host, no credentials, printable; anything else is no link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from integrator.console.app import ConsoleSource

__all__ = ["NEEDS_DAEMON", "Reach", "reach", "safe_url"]

log = structlog.get_logger("integrator.console")

NEEDS_DAEMON = "running a flow now and the live view of a run need the daemon"


def safe_url(text: str | None) -> str | None:
    """``text`` as a link to a daemon's console (ending in ``/``), or None when it is not an
    ``http``/``https`` URL with a host and without credentials."""
    if not text or len(text) > 300 or not text.isprintable() or any(c in text for c in " \"'<>`"):
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return None
    return text if text.endswith("/") else text + "/"


@dataclass(frozen=True)
class Reach:
    """A live daemon over this console's store; ``url`` None: it serves no console."""

    url: str | None
    until: float
    others: int = 0  # more live daemons over the same store

    def note(self) -> str:
        """What the console says instead of "need the daemon"."""
        if self.url is None:
            return (
                "a daemon runs the flows over this state store, but it serves no console this "
                "one can link to (beyond loopback it serves one only with users, --behind-proxy "
                "and --public-host): run now and the live view are in the daemon's console"
            )
        return f"the daemon at {self.url} runs the flows: run now and the live view are there"

    def run_url(self, run_id: int) -> str | None:
        """The daemon's page of run ``run_id`` (its live view while the run goes)."""
        return None if self.url is None else f"{self.url}runs/{run_id}"

    def as_json(self) -> dict[str, Any]:
        import datetime as dt

        return {
            "url": self.url,
            "until": dt.datetime.fromtimestamp(self.until, dt.UTC).isoformat(timespec="seconds"),
            "others": self.others,
            "note": self.note(),
        }


def reach(source: ConsoleSource) -> Reach | None:
    """The daemon a standalone console links to (the latest heartbeat with a usable URL
    first), or None: no live daemon, or this console is the daemon's own."""
    if source.where != "standalone":
        return None
    from integrator.state.daemons import Daemons

    try:
        seen = Daemons(source.store()).live()
    except Exception as exc:  # noqa: BLE001 - the page shows what it can; the store says why
        log.warning("daemons_unreadable", error=f"{type(exc).__name__}: {exc}")
        return None
    if not seen:
        return None
    urls = [(safe_url(d.url), d) for d in seen]
    linked = [(u, d) for u, d in urls if u is not None]
    url, first = linked[0] if linked else (None, seen[0])
    return Reach(url=url, until=first.until, others=len(seen) - 1)

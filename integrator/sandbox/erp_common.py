"""What the JSON-RPC and SOAP sandbox ERPs share: a password checked as Odoo checks it (PBKDF2),
sessions that expire, the product catalogue and the order book that counts duplicates.

A real ERP accepts a second create for the same customer reference (it makes a duplicate): so
does this one, and ``OrderBook.stats`` names the references created more than once, which the
exactly-once tests read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from integrator.sandbox.seed import PRODUCT_CODES

__all__ = [
    "CATALOGUE",
    "PBKDF2_ITERATIONS",
    "OrderBook",
    "Password",
    "Sessions",
    "amount",
]

# The products the ERP knows: the Omnitron sandbox's SKUs (seed.py), so its orders go through.
CATALOGUE = frozenset(PRODUCT_CODES)

# PBKDF2-SHA512 rounds of the stored password hash (Odoo stores passlib's pbkdf2_sha512). On
# the development machine (2 cores, CPython 3.11, OpenSSL) one check costs about 50 ms of CPU
# (measured by tests/test_sandbox_erps.py, which asserts it costs at least 20 ms).
PBKDF2_ITERATIONS = 90_000
AMOUNT_LIMIT = Decimal(10) ** 12


class Password:
    """One user's password, kept as a salted PBKDF2 hash and checked on every call that gives
    it (as Odoo's ``res.users.check``): the hash is computed at the first check, so a sandbox
    that nobody logs in to costs nothing."""

    def __init__(self, password: str, iterations: int = PBKDF2_ITERATIONS) -> None:
        self._password: str | None = password
        self.iterations = iterations
        self._salt = secrets.token_bytes(16)
        self._hash = b""
        self._lock = threading.Lock()
        self.checks = 0  # hashes computed to check a password (the stored one's excluded)

    def _derive(self, password: str) -> bytes:
        return hashlib.pbkdf2_hmac("sha512", password.encode(), self._salt, self.iterations)

    def check(self, given: Any) -> bool:
        """Whether ``given`` is the password: one full PBKDF2 derivation, whatever it is."""
        with self._lock:
            if self._password is not None:
                self._hash, self._password = self._derive(self._password), None
            self.checks += 1
        text = given if isinstance(given, str) else ""
        digest = self._derive(text)  # costs the same for a wrong type: no shortcut to time
        return isinstance(given, str) and bool(given) and hmac.compare_digest(digest, self._hash)


class Sessions:
    """Session keys issued at login: a key is live until ``ttl`` seconds have passed (by
    ``clock``) or every session is expired at once (``expire_all``)."""

    def __init__(self, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.lock = threading.Lock()
        self.live: dict[str, tuple[Any, float]] = {}  # key → (who it was issued to, expires at)
        self.checks = 0
        self.rejected = 0
        self.expired_at_once = 0  # times every session was expired (a fault, a control)

    def issue(self, who: Any) -> str:
        """A new random key (32 URL-safe characters) for ``who``."""
        key = secrets.token_urlsafe(24)
        with self.lock:
            self.live[key] = (who, self.clock() + self.ttl)
        return key

    def check(self, key: str, who: Any = None) -> bool:
        """Whether ``key`` is live (and was issued to ``who``, when given)."""
        with self.lock:
            self.checks += 1
            found = self.live.get(key)
            ok = found is not None and found[1] > self.clock()
            if ok and who is not None:
                ok = found is not None and found[0] == who
            if not ok:
                self.rejected += 1
                if found is not None and found[1] <= self.clock():
                    del self.live[key]
            return ok

    def expire_all(self) -> None:
        """Every session issued so far is dead."""
        with self.lock:
            self.live.clear()
            self.expired_at_once += 1

    def stats(self) -> dict[str, int]:
        now = self.clock()
        with self.lock:
            return {
                "session_checks": self.checks,
                "sessions_rejected": self.rejected,
                "sessions_live": sum(1 for _w, t in self.live.values() if t > now),
                "sessions_expired_at_once": self.expired_at_once,
            }


def amount(value: Any) -> Decimal | None:
    """An amount from a number or a numeric text (never a bool), below 10¹² in size; None when
    not one (``1e999999`` included: an ERP's amount fields are bounded)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() and abs(number) < AMOUNT_LIMIT else None


class OrderBook:
    """Orders by id, in creation order; creates counted per customer reference."""

    def __init__(self, name_format: str) -> None:
        self.name_format = name_format  # an order's name from its id: "S{:05d}" → S00001
        self.lock = threading.Lock()
        self.orders: list[dict[str, Any]] = []
        self.created: dict[str, int] = {}  # reference → creates
        self.next_line = 1

    def add(
        self,
        ref: str,
        order: dict[str, Any],
        lines: list[dict[str, Any]],
        *,
        counted: bool = True,
    ) -> dict[str, Any]:
        """Store a new order (a duplicate reference included); ``order`` gets its ``id`` and
        ``name``, each line its ``id`` (a number) and ``line_id`` (``<name>-<n>``). The stored
        record is returned. ``counted``: False for an order the ERP held before the sandbox
        started (not a create it received)."""
        with self.lock:
            order = {**order, "id": len(self.orders) + 1}
            order["name"] = self.name_format.format(order["id"])
            order["lines"] = []
            for n, line in enumerate(lines, 1):
                line_id = f"{order['name']}-{n}"
                order["lines"].append({**line, "id": self.next_line, "line_id": line_id})
                self.next_line += 1
            self.orders.append(order)
            if counted:
                self.created[ref] = self.created.get(ref, 0) + 1
            return order

    def find(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders if match(o)]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            dups = sorted(n for n, c in self.created.items() if c > 1)
            return {
                "orders": len(self.orders),
                "preloaded": len(self.orders) - sum(self.created.values()),
                "received": sum(self.created.values()),
                "duplicates": len(dups),
                "duplicate_numbers": dups,
                "created": dict(self.created),
            }

"""The console's users, roles and passwords: config.yaml's ``console:``, read and checked.

Light on purpose (stdlib only): ``validate`` and every load import it::

    console:
      session_secret: ${CONSOLE_SESSION_SECRET}   # signs the session cookie (32+ characters)
      session_lifetime: 8h                        # a login lasts this long (default 8h)
      users:
        - name: ayse
          role: operator                          # viewer, operator or admin
          password_hash: ${file:secrets/ayse.hash}  # from `integrator console hash-password`
          api_token: ${AYSE_API_TOKEN}            # optional: Authorization: Bearer for the API

A password hash is ``scrypt$N$r$p$salt$hash`` (hashlib.scrypt, base64 without padding): a hash
or a token written in clear in the YAML is refused like every secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integrator.config.checks import Options, clear_secret
from integrator.config.yamlfile import YamlDoc, join_key

__all__ = [
    "ROLES",
    "ConsoleConfig",
    "ConsoleUser",
    "LoginLimiter",
    "client_key",
    "hash_password",
    "read_console",
    "role_allows",
    "verify_password",
]

ROLES = ("viewer", "operator", "admin")  # each can do what the ones before it can
_CONSOLE_KEYS = {"users", "session_secret", "session_lifetime"}
_USER_KEYS = {"name", "role", "password_hash", "api_token"}
_SCRYPT = (2**14, 8, 1)  # N, r, p: 16 MiB, about 50 ms
MIN_SESSION_SECRET = 32
MAX_SESSION_LIFETIME = 30 * 86400
MIN_API_TOKEN = 24


def role_allows(role: str, needed: str) -> bool:
    """True when ``role`` may do what ``needed`` may (viewer < operator < admin)."""
    if role not in ROLES or needed not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    password_hash: str = field(default="", repr=False)
    api_token: str = field(default="", repr=False)

    def __repr__(self) -> str:  # never the hash or the token
        return f"ConsoleUser(name={self.name!r}, role={self.role!r})"


@dataclass(frozen=True)
class ConsoleConfig:
    users: tuple[ConsoleUser, ...] = ()
    session_secret: str = field(default="", repr=False)
    session_lifetime: float = 8 * 3600.0
    unset: tuple[str, ...] = ()  # keys whose ${…} was empty (a lenient load): not servable

    def __repr__(self) -> str:
        return f"ConsoleConfig(users={self.users!r})"

    @property
    def enabled(self) -> bool:
        """Login is on: users are declared."""
        return bool(self.users)

    def user(self, name: str) -> ConsoleUser | None:
        return next((u for u in self.users if u.name == name), None)

    def by_token(self, token: str) -> ConsoleUser | None:
        """The user whose API token this is; every token is compared, in constant time."""
        found = None
        for u in self.users:
            if u.api_token and hmac.compare_digest(u.api_token.encode(), token.encode()):
                found = u
        return found


# --------------------------------------------------------------------- passwords
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` (a fresh 16-byte salt unless given)."""
    n, r, p = _SCRYPT
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def hash_problem(text: str) -> str | None:
    """Why ``text`` is not a password hash this module makes (None: it is one)."""
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return "expected a hash from `integrator console hash-password` (scrypt$N$r$p$salt$hash)"
    try:
        n, r, p = (int(x) for x in parts[1:4])
        _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return "the hash is damaged: make it again with `integrator console hash-password`"
    if not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return "the hash's scrypt parameters are out of range: make it again"
    return None


# compared against when there is no hash, so that an unknown user costs as much as a known one
_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; as slow for a wrong or missing hash as for a
    right one, and compared in constant time."""
    if hash_problem(stored) is not None:
        stored, ok = _DUMMY, False
    else:
        ok = True
    _, n, r, p, salt, digest = stored.strip().split("$")
    want = _unb64(digest)
    got = hashlib.scrypt(
        password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
    )
    return hmac.compare_digest(got, want) and ok


# ---------------------------------------------------------------- login limits
def client_key(address: str) -> str:
    """The client a login limit counts: an IPv4 address (an IPv4-mapped IPv6 one too) as it is,
    an IPv6 address by its /64 network, anything else as given."""
    from integrator.scheduler.web import peer_address  # light: no web framework

    ip = peer_address(address.partition("%")[0])
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginLimiter:
    """Failed logins per client and per user name, in a sliding window (a clock you pass).

    After ``per_user`` failures for one name, or ``per_client`` from one address, within
    ``window`` seconds, logins from there or for that name are refused until the oldest
    failure leaves the window. A success does not clear the client's count (a guesser with one
    real account would reset it). A client is its address (behind ``--behind-proxy``, the one
    the proxy appended to X-Forwarded-For), and an IPv6 client is its /64 (``client_key``): a
    host that owns one changes its address at will."""

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_client: int = 20,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user, self.per_client, self.window, self.clock = (
            per_user, per_client, window, clock,
        )  # fmt: skip
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def wait(self, client: str, user: str) -> float:
        """Seconds until a login from ``client`` for ``user`` is taken again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [0.0]
            by_client = ("c", client_key(client))
            for key, limit in ((by_client, self.per_client), (("u", user), self.per_user)):
                q = self._recent(key, now)
                if len(q) >= limit:
                    waits.append(q[-limit] + self.window - now)
            return max(waits)

    def failed(self, client: str, user: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (("c", client_key(client)), ("u", user)):
                self._fails.setdefault(key, deque()).append(now)
                if len(self._fails) > 100_000:  # a flood of names: forget the oldest keys
                    self._fails.pop(next(iter(self._fails)))

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(("u", user), None)


# ---------------------------------------------------------------------- config


def read_console(o: Options, doc: YamlDoc) -> ConsoleConfig:
    """config.yaml's ``console:``, every problem recorded in ``o.issues``."""
    from integrator.alarms.config import parse_duration  # light

    if "console" not in o.data:
        return ConsoleConfig()
    c = Options(o.data.get("console"), doc, "console", o.issues, _CONSOLE_KEYS)
    raw = doc.data.get("console") if isinstance(doc.data, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    clear_secret(doc, raw.get("session_secret"), c.sub("session_secret"), o.issues)
    lifetime = 8 * 3600.0
    if "session_lifetime" in c.data:
        found = parse_duration(c.data["session_lifetime"])
        if isinstance(found, str):
            c.error("session_lifetime", found)
        elif not 60 <= found <= MAX_SESSION_LIFETIME:
            c.error("session_lifetime", "expected from 1m to 30d")
        else:
            lifetime = found
    users: list[ConsoleUser] = []
    seen: dict[str, str] = {}
    raw_users = raw.get("users")
    unset: list[str] = []

    def referenced_unset(raw_value: Any, value: str, key: str) -> bool:
        """A ``${…}`` that came out empty: a lenient load (strict ones report the variable)."""
        if not value and isinstance(raw_value, str) and "${" in raw_value:
            unset.append(key)
            return True
        return False

    for i, data in enumerate(c.get("users", list, [])):
        key = join_key(c.sub("users"), i)
        raw_user = raw_users[i] if isinstance(raw_users, list) and i < len(raw_users) else {}
        u = Options(data, doc, key, o.issues, _USER_KEYS)
        name = u.get(
            "name",
            str,
            "",
            required=True,
            check=lambda v: (
                None
                if v.strip() and v.isprintable() and len(v) <= 64
                else "expected a printable name of 1 to 64 characters"
            ),
        )
        role = u.get(
            "role",
            str,
            "",
            required=True,
            check=lambda v: None if v in ROLES else f"expected one of {', '.join(ROLES)}",
        )
        if name in seen:
            u.error("name", f"user {name!r} is declared twice (also at {seen[name]})")
        seen[name] = key
        raw_user = raw_user if isinstance(raw_user, dict) else {}
        for secret in ("password_hash", "api_token"):
            clear_secret(doc, raw_user.get(secret), u.sub(secret), o.issues)
        password_hash = u.get("password_hash", str, "")
        token = u.get("api_token", str, "")
        missing = [
            referenced_unset(raw_user.get(k), v, u.sub(k))
            for k, v in (("password_hash", password_hash), ("api_token", token))
        ]
        if any(missing):
            pass  # what the variable will hold is checked where it is set (a strict load)
        elif not password_hash and not token:
            u.error("password_hash", "a user needs a password_hash or an api_token (or both)")
        if password_hash:
            problem = hash_problem(password_hash)
            if problem:
                u.error("password_hash", problem)
        if token and len(token) < MIN_API_TOKEN:
            u.error(
                "api_token",
                f"expected at least {MIN_API_TOKEN} characters (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')",
            )
        users.append(ConsoleUser(name, role, password_hash.strip(), token))
    secret = c.get("session_secret", str, "")
    if referenced_unset(raw.get("session_secret"), secret, c.sub("session_secret")):
        pass
    elif users and any(x.password_hash for x in users) and not secret:
        c.error(
            "session_secret",
            "users with a password need session_secret (it signs the session cookie): "
            "session_secret: ${CONSOLE_SESSION_SECRET}",
        )
    elif secret and len(secret) < MIN_SESSION_SECRET:
        c.error(
            "session_secret",
            f"expected at least {MIN_SESSION_SECRET} characters (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')",
        )
    tokens = [x.api_token for x in users if x.api_token]
    if len(set(tokens)) != len(tokens):
        c.error("users", "two users share an api_token: give each its own")
    return ConsoleConfig(tuple(users), secret, lifetime, tuple(unset))

"""Login, sessions, roles and CSRF for the console (Flask; imported only when it serves).

- Who: a signed session cookie (Flask's session, HMAC-SHA256 with ``console.session_secret``;
  ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the request came over TLS, which behind a
  proxy is read from ``X-Forwarded-Proto`` only with ``--behind-proxy``), or an API token
  (``Authorization: Bearer``). Everything is read from the current configuration on every
  request (the daemon reloads it): the role, so a user removed or demoted loses access at
  once; the signing secret, so a new ``session_secret`` ends every session and a daemon given
  users by a reload signs with theirs; and the user's password hash, whose fingerprint (an
  HMAC under the secret, never the hash) the session carries, so a password change ends that
  user's sessions. A session lasts ``session_lifetime``.
- What: one table, ``ROUTE_ROLES``, endpoint → the least role (None: anyone). Every request is
  checked against it before its view runs; an endpoint missing from it is refused (fail closed).
  Without users there is no login: ``guard.HostGuard`` keeps the console loopback and read-only
  but for ``LOCAL_WRITES`` (the workbench's runs), taken only from the console's own pages.
- CSRF: every request that is not GET/HEAD and is authenticated by the cookie (forms, htmx, the
  API from a browser) carries the session's token, as the form field ``csrf_token`` or the
  ``X-CSRF-Token`` header; API token requests need none (no browser sends them on its own).
- Logins are limited per client address and per user name (``users.LoginLimiter``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, redirect, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer

from integrator.console.users import (
    MAX_SESSION_LIFETIME,
    ConsoleConfig,
    ConsoleUser,
    LoginLimiter,
    role_allows,
)

__all__ = ["LOCAL_WRITES", "ROUTE_ROLES", "Auth", "htmx", "install", "problem"]

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# endpoint → the least role that may use it; None: anyone (the login page, static files)
ROUTE_ROLES: dict[str, str | None] = {
    "static": None,
    "login": None,
    "login_form": None,
    "logout": None,
    "dashboard": "viewer",
    "runs_page": "viewer",
    "run_page": "viewer",
    "orders_page": "viewer",
    "order_page": "viewer",
    "failures_page": "viewer",
    "alarms_page": "viewer",
    "api_document": "viewer",
    "api_flows": "viewer",
    "api_flow": "viewer",
    "api_runs": "viewer",
    "api_run": "viewer",
    "api_run_log": "viewer",
    "api_orders": "viewer",
    "api_order": "viewer",
    "api_failures": "viewer",
    "api_alarms": "viewer",
    "api_me": "viewer",
    # the live view of a run (the daemon's memory): reads
    "run_live_fragment": "viewer",
    "api_run_live": "viewer",
    "api_live": "viewer",
    # the workbench: "read and test"; its runs are POSTs (CSRF with a cookie session), which
    # call nothing and write nothing (trace mode)
    "workbench_page": "viewer",
    "api_workbench": "viewer",
    "workbench_run": "viewer",
    "workbench_golden": "viewer",
    "api_workbench_run": "viewer",
    "api_workbench_golden": "viewer",
    "action_release": "operator",
    "action_replay": "operator",
    "action_resolve": "operator",
    "action_run": "operator",
    "api_action_release": "operator",
    "api_action_replay": "operator",
    "api_action_resolve": "operator",
    "api_action_run": "operator",
    "api_users": "admin",
}

# the POST routes the console takes without users (loopback only, from its own pages:
# ``guard.HostGuard``); every other POST needs users, a login and a CSRF token
LOCAL_WRITES: frozenset[str] = frozenset(
    {"workbench_run", "workbench_golden", "api_workbench_run", "api_workbench_golden"}
)


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie, with SHA-256, ``Secure`` whenever the request is HTTPS, and the
    secret and the lifetime of the current configuration (not the app's, set once)."""

    digest_method = staticmethod(hashlib.sha256)

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request.is_secure)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        secret = self.auth.secret()
        if secret is None:
            return None  # Flask's null session: nothing signed, nothing read
        return URLSafeTimedSerializer(
            secret,
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime | None:
        users = self.auth.users()
        if not session.permanent or users is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=users.session_lifetime)


class Auth:
    """The console's login state: its users, the login limiter, the clock."""

    def __init__(
        self,
        config: Callable[[], ConsoleConfig | None],
        clock: Callable[[], float] = time.time,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.config, self.clock = config, clock
        self.limiter = limiter or LoginLimiter(clock=clock)
        # session ids logged out, with when they would have expired: a copied cookie dies
        # with its logout (kept in memory: a restart forgets them, the expiry still holds)
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def revoke(self, sid: str, until: float) -> None:
        now = self.clock()
        with self._lock:
            for old in [k for k, v in self._revoked.items() if v <= now]:
                del self._revoked[old]
            self._revoked[sid] = until

    def revoked(self, sid: str) -> bool:
        with self._lock:
            return sid in self._revoked

    def users(self) -> ConsoleConfig | None:
        found = self.config()
        return found if found is not None and found.enabled else None

    def secret(self) -> str | None:
        """The session secret of the current configuration (None: no users, or none set)."""
        users = self.users()
        return users.session_secret if users is not None and users.session_secret else None

    def fingerprint(self, user: ConsoleUser) -> str | None:
        """What a session keeps of ``user``'s password hash: an HMAC of it under the session
        secret (never the hash: the cookie is signed, not encrypted). A new hash, or a new
        secret, gives another fingerprint, and the sessions made with the old one end."""
        secret = self.secret()
        if secret is None or not user.password_hash:
            return None
        mac = hmac.new(secret.encode(), b"password\0" + user.password_hash.encode(), "sha256")
        return mac.hexdigest()[:32]

    @property
    def enabled(self) -> bool:
        return self.users() is not None


def current_user() -> ConsoleUser | None:
    """The user of this request (None without login)."""
    user: ConsoleUser | None = g.get("user")
    return user


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def htmx() -> bool:
    """The request is one of the console's pages' htmx requests (not the API)."""
    return request.headers.get("HX-Request") == "true" and _wants_page()


def problem(status: int, detail: str) -> Response:
    """A refusal an htmx request shows where its answer goes (``base.html`` has htmx swap
    4xx and 5xx answers): words in the page, not the API's JSON."""
    from markupsafe import escape

    return Response(
        f'<p class="note failed" id="problem">{escape(detail)}</p>',
        status,
        content_type="text/html; charset=utf-8",
    )


def _to_login() -> Response:
    """No session behind an htmx request: the whole page goes to the login, which brings the
    user back to it (``HX-Current-URL``, kept local), rather than a login page in a part."""
    here = urlsplit(request.headers.get("HX-Current-URL", ""))
    target = safe_next(here.path + (f"?{here.query}" if here.query else ""))
    answer = problem(401, "log in first: your session has ended")
    answer.headers["HX-Redirect"] = "/login?next=" + _quote(target)
    return answer


def _refuse(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    answer = problem(status, detail) if htmx() else jsonify({"detail": detail})
    answer.status_code = status
    for k, v in (headers or {}).items():
        answer.headers[k] = v
    return answer


def _wants_page() -> bool:
    return not request.path.startswith("/api/")


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: ``//evil``, ``https://…``)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/"
    return target


def install(app: Flask, auth: Auth, page: Callable[..., Any]) -> None:
    """Sessions, the role check, CSRF and the login/logout routes on ``app``."""
    # the secret and the lifetime are read from the configuration on each request (_Sessions,
    # ``_session_user``); Flask's own bound on a cookie's age is the longest lifetime allowed
    app.session_interface = _Sessions(auth)
    app.config.update(
        SESSION_COOKIE_NAME="integrator_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=MAX_SESSION_LIFETIME,
    )

    @app.context_processor
    def _security_values() -> dict[str, Any]:
        user = current_user()
        return {
            "user": user,
            "login_on": auth.enabled,
            "csrf_token": csrf_token() if auth.secret() is not None else "",
            "can": (lambda role: user is not None and role_allows(user.role, role)),
        }

    @app.before_request
    def _check() -> Any:
        users = auth.users()
        if users is None:
            return None  # no login: the guard keeps it local and read-only
        endpoint = request.endpoint
        if endpoint is None:
            needed: str | None = "viewer"  # an unknown path: 404 for a user, 401 otherwise
        elif endpoint not in ROUTE_ROLES:
            return _refuse(403, f"no role may use {endpoint!r} (not in the console's role table)")
        else:
            needed = ROUTE_ROLES[endpoint]
        by_token = False
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            user = users.by_token(token.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                return _refuse(
                    401,
                    "the API token is not known (Authorization: Bearer TOKEN, a user's "
                    "api_token in config.yaml)",
                    {"WWW-Authenticate": 'Bearer realm="integrator"'},
                )
            by_token = True
        else:
            user = _session_user(users, auth)
        g.user = user
        if needed is None:
            return _csrf_check() if request.method not in SAFE_METHODS else None
        if user is None:
            if htmx():
                return _to_login()
            if _wants_page() and request.method in SAFE_METHODS:
                return redirect("/login?next=" + _quote(request.full_path.rstrip("?")), 303)
            return _refuse(
                401,
                "log in first (POST /login), or send Authorization: Bearer TOKEN",
                {"WWW-Authenticate": 'Bearer realm="integrator"'},
            )
        if not role_allows(user.role, needed):
            return _refuse(
                403, f"{user.name} is {user.role}: this needs the {needed} role or above"
            )
        if request.method not in SAFE_METHODS and not by_token:
            return _csrf_check()
        return None

    def _csrf_check() -> Response | None:
        sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
        want = session.get("csrf")
        if not isinstance(want, str) or not sent or not hmac.compare_digest(sent, want):
            return _refuse(
                403,
                "the CSRF token is missing or wrong: reload the page and try again (the API "
                f"from a session sends it as {CSRF_HEADER}; an API token needs none)",
            )
        return None

    @app.get("/login")
    def login_form() -> Any:
        if not auth.enabled:
            return redirect("/", 303)
        return page("login.html", next=safe_next(request.args.get("next")), error=None)

    @app.post("/login")
    def login() -> Any:
        users = auth.users()
        if users is None:
            return _refuse(404, "the console has no users: there is no login")
        name = request.form.get("name", "")[:64]
        password = request.form.get("password", "")[:1024]
        client = request.remote_addr or "?"
        wait = auth.limiter.wait(client, name)
        if wait > 0:
            seconds = str(int(wait) + 1)
            detail = f"too many failed logins: try again in {seconds} s"
            if request.accept_mimetypes.best == "application/json":
                return _refuse(429, detail, {"Retry-After": seconds})
            answer = page("login.html", next=safe_next(request.form.get("next")), error=detail)
            return answer, 429, {"Retry-After": seconds}
        from integrator.console.users import verify_password

        user = users.user(name)
        ok = verify_password(password, user.password_hash if user is not None else "")
        if user is None or not user.password_hash or not ok:
            auth.limiter.failed(client, name)
            detail = "wrong user name or password"
            if request.accept_mimetypes.best == "application/json":
                return _refuse(401, detail)
            return page("login.html", next=safe_next(request.form.get("next")), error=detail), 401
        auth.limiter.succeeded(name)
        mark = auth.fingerprint(user)
        if mark is None:  # a config with password users has a secret (``read_console``)
            return _refuse(503, "console.session_secret is not set: sessions cannot be signed")
        session.clear()  # a new session: nothing from before the login (fixation)
        session.permanent = True
        session["user"] = user.name
        session["pw"] = mark
        session["at"] = auth.clock()
        session["sid"] = secrets.token_urlsafe(16)
        session["csrf"] = secrets.token_urlsafe(32)
        if request.accept_mimetypes.best == "application/json":
            return jsonify({"user": user.name, "role": user.role, "csrf_token": session["csrf"]})
        return redirect(safe_next(request.form.get("next")), 303)

    @app.post("/logout")
    def logout() -> Any:
        users, sid, at = auth.users(), session.get("sid"), session.get("at")
        if users is not None and isinstance(sid, str) and isinstance(at, int | float):
            auth.revoke(sid, at + users.session_lifetime)
        session.clear()
        return redirect("/login", 303)


def _session_user(users: ConsoleConfig, auth: Auth) -> ConsoleUser | None:
    name, at, sid = session.get("user"), session.get("at"), session.get("sid")
    mark = session.get("pw")
    if not isinstance(name, str) or not isinstance(at, int | float) or not isinstance(sid, str):
        return None
    user = users.user(name)
    now = auth.clock()
    alive = at <= now < at + users.session_lifetime and not auth.revoked(sid)
    want = auth.fingerprint(user) if user is not None else None
    # the password the session was made with is still the user's (a change ends the session)
    same = isinstance(mark, str) and want is not None and hmac.compare_digest(mark, want)
    if user is None or not alive or not same:
        session.pop("user", None)
        session.pop("at", None)
        session.pop("pw", None)
        return None
    return user


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")

"""The console's login pieces with a clock the test controls: the login limit, session expiry,
the role table (every route in it), password hashes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient

from integrator.connectors.redact import Redactor
from integrator.console.app import ConsoleSource, create_app
from integrator.console.security import ROUTE_ROLES, Auth, safe_next
from integrator.console.users import (
    ConsoleConfig,
    ConsoleUser,
    LoginLimiter,
    hash_password,
    role_allows,
    verify_password,
)

PASSWORD = "operator-pass-123"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _users(lifetime: float = 3600.0) -> ConsoleConfig:
    return ConsoleConfig(
        (ConsoleUser("otto", "operator", hash_password(PASSWORD)),),
        "k" * 40,
        lifetime,
    )


def _client(clock: Clock, cfg: ConsoleConfig) -> FlaskClient:
    source = ConsoleSource(
        store=lambda: None,  # type: ignore[arg-type, return-value]  # not asked
        redactor=Redactor,
        log_dir=Path,
        schedules=dict,
        console=lambda: cfg,
    )
    guard = create_app(source, auth=Auth(lambda: cfg, clock=clock))
    app = cast(Flask, guard.app)
    app.testing = True
    return app.test_client()


def _login(c: FlaskClient, password: str = PASSWORD, name: str = "otto") -> Any:
    form = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    return c.post("/login", data={"name": name, "password": password, "csrf_token": token[1]})


def test_limiter_opens_again_when_the_window_passes() -> None:
    clock = Clock()
    lim = LoginLimiter(per_user=3, per_client=5, window=60, clock=clock)
    for _ in range(3):
        assert lim.wait("10.0.0.1", "otto") == 0
        lim.failed("10.0.0.1", "otto")
    assert lim.wait("10.0.0.1", "otto") == 60
    assert lim.wait("10.0.0.2", "otto") == 60  # per user, from any address
    assert lim.wait("10.0.0.1", "vera") == 0  # another name from the same client: not yet
    clock.now += 59.5
    assert lim.wait("10.0.0.1", "otto") == pytest.approx(0.5)
    clock.now += 0.5
    assert lim.wait("10.0.0.1", "otto") == 0
    # per client: five failures over many names
    for i in range(5):
        lim.failed("10.0.0.9", f"name{i}")
    assert lim.wait("10.0.0.9", "fresh-name") == 60


def test_login_limit_through_the_app() -> None:
    clock = Clock()
    c = _client(clock, _users())
    for _ in range(5):
        assert _login(c, "wrong").status_code == 401
    r = _login(c)
    assert r.status_code == 429 and r.headers["Retry-After"] == "301"
    clock.now += 301
    assert _login(c).status_code == 303


def test_a_session_expires_with_its_lifetime() -> None:
    clock = Clock()
    c = _client(clock, _users(lifetime=600))
    assert _login(c).status_code == 303
    assert c.get("/api/me").get_json() == {"name": "otto", "role": "operator"}
    clock.now += 599
    assert c.get("/api/me").status_code == 200
    clock.now += 1
    assert c.get("/api/me").status_code == 401
    # a clock moved back (a session from the future) is not trusted either
    assert _login(c).status_code == 303
    clock.now -= 10
    assert c.get("/api/me").status_code == 401


def test_a_removed_user_loses_access_at_once() -> None:
    clock = Clock()
    cfg = [_users()]
    source = ConsoleSource(
        store=lambda: None,  # type: ignore[arg-type, return-value]  # not asked
        redactor=Redactor,
        log_dir=Path,
        schedules=dict,
        console=lambda: cfg[0],
    )
    guard = create_app(source, auth=Auth(lambda: cfg[0], clock=clock))
    c = cast(Flask, guard.app).test_client()
    assert _login(c).status_code == 303
    assert c.get("/api/me").status_code == 200
    cfg[0] = ConsoleConfig((ConsoleUser("ada", "admin", hash_password("x" * 12)),), "k" * 40)
    assert c.get("/api/me").status_code == 401


def test_every_route_is_in_the_role_table() -> None:
    c = _client(Clock(), _users())
    app = c.application
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == set(ROUTE_ROLES), endpoints ^ set(ROUTE_ROLES)
    for endpoint, role in ROUTE_ROLES.items():
        if endpoint.startswith(("action_", "api_action_")):
            assert role == "operator", endpoint
    assert {e for e, r in ROUTE_ROLES.items() if r is None} == {
        "static",
        "login",
        "login_form",
        "logout",
    }


def test_an_endpoint_outside_the_table_is_refused() -> None:
    c = _client(Clock(), _users())
    app = c.application
    app.add_url_rule("/secret", "secret", lambda: "the secret")
    assert _login(c).status_code == 303
    r = c.get("/secret")
    assert r.status_code == 403 and "role table" in r.get_json()["detail"]


def test_roles_order() -> None:
    assert role_allows("admin", "operator") and role_allows("operator", "viewer")
    assert not role_allows("viewer", "operator") and not role_allows("operator", "admin")
    assert not role_allows("root", "viewer") and not role_allows("admin", "root")


def test_password_hashes() -> None:
    h = hash_password("correct horse")
    assert h != hash_password("correct horse")  # salted
    assert verify_password("correct horse", h)
    assert not verify_password("correct horsE", h)
    assert not verify_password("correct horse", "")
    assert not verify_password("correct horse", "scrypt$1$1$1$$")
    assert not verify_password("", h)


def test_safe_next() -> None:
    assert safe_next("/orders/1?x=2") == "/orders/1?x=2"
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil.example", None, "", "x"):
        assert safe_next(bad) == "/", bad


def test_a_console_served_beyond_loopback_refuses_everything_once_it_has_no_users() -> None:
    """The daemon serves the console beyond loopback only with users; a reload that takes them
    away must not leave it open (it answered 200, read-only, and ran the workbench)."""
    from integrator.console.guard import HostGuard

    users: list[str] = ["ayse"]
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"ok"]

    guard = HostGuard(app, writes=lambda: bool(users), public_host="console.example.com")

    def status(host: str, method: str = "GET") -> str:
        got: list[str] = []
        env = {"HTTP_HOST": host, "REQUEST_METHOD": method, "PATH_INFO": "/api/flows"}
        b"".join(guard(env, lambda s, _h, *_a: got.append(s)))
        return got[0]

    assert status("console.example.com").startswith("200")
    users.clear()  # config.yaml reloaded without console users
    for host in ("console.example.com", "127.0.0.1", "localhost"):
        assert status(host).startswith("403"), host
        assert status(host, "POST").startswith("403"), host
    assert seen == ["/api/flows"]

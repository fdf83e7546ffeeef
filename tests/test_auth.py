"""Each connector auth kind against the sandbox ERP over real HTTP: login, reuse, expiry,
one new login after a 401, refused logins, and the config checks around them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support import stats

from integrator.config import load_app
from integrator.connectors import Connector, LoginRefused, Redactor
from integrator.errors import AuthenticationError, ConfigurationError, SystemicError
from integrator.sandbox import Sandbox

CONNECTORS = {
    "oauth2": """
    ClientAppId: ${ERP_CLIENT_ID}
    ClientAppSecret: ${ERP_CLIENT_SECRET}
    TokenUrl: /oauth/token
""",
    "jsonrpc": """
    Username: ${ERP_USERNAME}
    Password: ${ERP_PASSWORD}
    TokenLogin:
      Path: /jsonrpc
      Body: {jsonrpc: "2.0", method: login, id: 1,
             params: {db: sandbox, login: "{username}", password: "{password}"}}
      TokenPath: result.session_id
      ExpiresPath: result.expires_in
      Header: X-Session-Id
      HeaderFormat: "{token}"
""",
    "b1": """
    Username: ${ERP_USERNAME}
    Password: ${ERP_PASSWORD}
    CookieLogin:
      Path: /b1s/v1/Login
      Body: {CompanyDB: SBODEMOTR, UserName: "{username}", Password: "{password}"}
""",
    "bearer": """
    BearerToken: ${ERP_TOKEN}
""",
    "basic": """
    Username: ${ERP_USERNAME}
    Password: ${ERP_PASSWORD}
""",
}
LOGINS = ("oauth2", "jsonrpc", "b1")
_opened: list[Connector] = []


@pytest.fixture(autouse=True)
def _close_connectors() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def connector(
    tmp_path: Path, sandbox: Sandbox, kind: str, env: dict[str, str] | None = None
) -> Connector:
    """A connector named ``kind`` loaded from a config.yaml, as the runner loads it."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"connectors:\n  - Name: {kind}\n    Host: ${{ERP_URL}}\n{CONNECTORS[kind]}")
    app = load_app(cfg, {**sandbox.env(), **(env or {})})
    conn = Connector(app.connectors[0], Redactor(app.secrets))
    conn._sleep = lambda _s: None
    _opened.append(conn)
    return conn


def auth_stats(sandbox: Sandbox) -> dict[str, object]:
    return dict(stats(sandbox.erp.url)["auth"])


def post(conn: Connector, n: int = 1) -> None:
    for i in range(n):
        resp = conn.request("POST", "/webhooks/partner/", json_body={"n": i}, idempotent=False)
        assert resp.status_code == 202


def control(sandbox: Sandbox, **spec: object) -> None:
    requests.post(f"{sandbox.erp.url}/_sandbox/auth", json=spec, timeout=5).raise_for_status()


@pytest.mark.parametrize("kind", [*LOGINS, "bearer", "basic"])
def test_each_kind_reaches_the_protected_api(tmp_path: Path, sandbox: Sandbox, kind: str) -> None:
    conn = connector(tmp_path, sandbox, kind)
    post(conn, 3)
    assert len(sandbox.erp.webhooks["partner"]) == 3
    logins = auth_stats(sandbox)["logins"]
    assert logins == {k: (1 if k == kind else 0) for k in LOGINS}  # one login, then reused


@pytest.mark.parametrize("kind", LOGINS)
def test_revoked_credential_logs_in_again_once(tmp_path: Path, sandbox: Sandbox, kind: str) -> None:
    """A 401 makes one new login; the write is repeated (a 401 was not processed)."""
    conn = connector(tmp_path, sandbox, kind)
    post(conn)
    control(sandbox, revoke=True)
    post(conn)
    s = auth_stats(sandbox)
    assert s["logins"][kind] == 2 and s["rejected"] == 1  # type: ignore[index]
    assert len(sandbox.erp.webhooks["partner"]) == 2


def test_many_workers_meeting_a_401_cause_one_login(tmp_path: Path, sandbox: Sandbox) -> None:
    conn = connector(tmp_path, sandbox, "oauth2")
    post(conn)
    control(sandbox, revoke=True)
    threads = [threading.Thread(target=post, args=(conn, 2)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert auth_stats(sandbox)["logins"]["oauth2"] == 2  # type: ignore[index]
    assert len(sandbox.erp.webhooks["partner"]) == 17


def test_a_credential_is_renewed_before_it_expires(tmp_path: Path, sandbox: Sandbox) -> None:
    """OAuth2 ``expires_in``: renewed at 90 % of its life, so no call meets a 401."""
    control(sandbox, token_ttl=1)
    conn = connector(tmp_path, sandbox, "oauth2")
    post(conn)
    time.sleep(1.0)
    post(conn)
    s = auth_stats(sandbox)
    assert s["logins"]["oauth2"] == 2 and s["rejected"] == 0  # type: ignore[index]


def test_a_b1_session_lapses_after_session_timeout(tmp_path: Path, sandbox: Sandbox) -> None:
    """SAP B1 ``SessionTimeout`` is in minutes; a session past it is not used again."""
    conn = connector(tmp_path, sandbox, "b1")
    post(conn)
    auth = conn.auth
    assert 25 * 60 < auth.expires_at - time.monotonic() <= 30 * 60  # type: ignore[attr-defined]
    auth.expires_at = time.monotonic()  # type: ignore[attr-defined]  # as if 30 minutes passed
    post(conn)
    assert auth_stats(sandbox)["logins"]["b1"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("kind", "env", "check"),
    [
        ("oauth2", {"ERP_CLIENT_SECRET": "wrong-client-secret"}, "ClientAppId and ClientAppSecret"),
        ("jsonrpc", {"ERP_PASSWORD": "wrong-password"}, "the ERP says: Access Denied"),
        ("b1", {"ERP_PASSWORD": "wrong-password"}, "UserName, Password and CompanyDB"),
    ],
)
def test_a_refused_login_says_what_to_check_and_shows_no_secret(
    tmp_path: Path, sandbox: Sandbox, kind: str, env: dict[str, str], check: str
) -> None:
    conn = connector(tmp_path, sandbox, kind, env)
    with pytest.raises(LoginRefused) as info:
        conn.login()  # the login stage: the run stops
    msg = str(info.value)
    assert check in msg and repr(kind) in msg
    assert "wrong-" not in msg and "sandbox-" not in msg
    with pytest.raises(LoginRefused) as during:  # mid-run too: the run stops, nothing sent
        post(conn)
    assert isinstance(during.value, SystemicError) and check in str(during.value)
    assert "partner" not in sandbox.erp.webhooks


def test_a_static_credential_is_not_retried_on_401(tmp_path: Path, sandbox: Sandbox) -> None:
    """A 401 to a static token cannot be cured by a login: systemic, the run stops."""
    conn = connector(tmp_path, sandbox, "bearer", {"ERP_TOKEN": "not-the-token"})
    with pytest.raises(AuthenticationError) as info:
        post(conn)
    assert "answered 401" in str(info.value) and "connector 'bearer'" in str(info.value)
    assert "not-the-token" not in str(info.value)
    assert stats(sandbox.erp.url)["calls"]["webhook"] == 1


def test_issued_credentials_are_redacted(tmp_path: Path, sandbox: Sandbox) -> None:
    for kind in LOGINS:
        conn = connector(tmp_path, sandbox, kind)
        headers, _ = conn.auth.current()
        value = next(iter(headers.values()))
        secret = value.split("=", 1)[-1].split(";")[0].removeprefix("Bearer ")
        assert conn.redactor.scrub(f"x {secret} y") == "x *** y"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (CONNECTORS["oauth2"] + "    BearerToken: ${ERP_TOKEN}\n", "one way to log in"),
        ("    ClientAppId: ${ERP_CLIENT_ID}\n    ClientAppSecret: ${ERP_CLIENT_SECRET}\n",
         "[connectors[0].TokenUrl]: OAuth2 needs TokenUrl"),
        ("    ClientAppId: x\n    ClientAppSecret: plain-text\n    TokenUrl: /t\n",
         "[connectors[0].ClientAppSecret]: secret written in clear"),
        (CONNECTORS["b1"].replace('"{password}"', "hunter22"),
         "[connectors[0].CookieLogin.Body]: 'Password' must be '{password}'"),
        ("    CookieLogin: {Path: /b1s/v1/Login}\n",
         "[connectors[0].CookieLogin.Body]: required option is missing"),
    ],
)  # fmt: skip
def test_auth_config_errors_name_the_key(
    tmp_path: Path, sandbox: Sandbox, block: str, expected: str
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"connectors:\n  - Name: erp\n    Host: ${{ERP_URL}}\n{block}")
    with pytest.raises(ConfigurationError) as info:
        load_app(cfg, sandbox.env())
    assert expected in str(info.value)

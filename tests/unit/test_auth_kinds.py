"""Auth kinds own their options: the registry, how the loader picks a kind, and a kind added
by one module (this one) used from YAML against the sandbox ERP over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integrator.config import load_app
from integrator.config.checks import Options
from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector, Redactor, auth
from integrator.connectors.auth import Auth, AuthConfig, Kind, Send, Url
from integrator.connectors.auth.basic import Basic
from integrator.connectors.auth.bearer import Bearer
from integrator.connectors.auth.cookie_login import CookieLogin
from integrator.connectors.auth.oauth2 import OAuth2
from integrator.connectors.auth.token_login import TokenLogin
from integrator.errors import ConfigurationError
from integrator.sandbox import SANDBOX_ENV, Sandbox


# ------------------------------------------------------------------ a kind in one module
@dataclass(frozen=True)
class StaticSession(AuthConfig):
    """``StaticSession: ${ENV}``: a long-lived session token sent as a bearer token."""

    token: str

    def __repr__(self) -> str:
        return "StaticSession(***)"

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        return Auth({"Authorization": f"Bearer {self.token}"})


def read_static_session(o: Options, raw: Any) -> StaticSession | None:
    token = o.get("StaticSession", str, "")
    if token and len(token) < 8:
        o.error("StaticSession", "expected a session token of at least 8 characters")
    return StaticSession(token) if token else None


STATIC_SESSION = Kind(
    name="static_session",
    selector="StaticSession",
    keys=frozenset({"StaticSession"}),
    secrets=frozenset({"StaticSession"}),
    read=read_static_session,
)


@pytest.fixture
def static_session() -> Iterator[Kind]:
    auth.register(STATIC_SESSION)
    try:
        yield STATIC_SESSION
    finally:
        auth.unregister(STATIC_SESSION.name)


def load(tmp_path: Path, block: str, env: dict[str, str] | None = None) -> ConnectorConfig:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"connectors:\n  - Name: erp\n    Host: ${{ERP_URL}}\n{block}")
    app = load_app(cfg, {**SANDBOX_ENV, "ERP_URL": "http://127.0.0.1:1", **(env or {})})
    return app.connectors[0]


def problems(tmp_path: Path, block: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path, block, env)
    return str(info.value)


def test_a_kind_added_by_one_module_is_used_from_yaml(
    tmp_path: Path, sandbox: Sandbox, static_session: Kind
) -> None:
    """Registered from this module, the kind's option is known, checked, a secret, and its
    Auth authenticates real calls to the sandbox ERP."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("connectors:\n  - Name: erp\n    Host: ${ERP_URL}\n"
                   "    StaticSession: ${ERP_TOKEN}\n")  # fmt: skip
    app = load_app(cfg, sandbox.env())
    conn_cfg = app.connectors[0]
    assert isinstance(conn_cfg.auth, StaticSession)
    conn = Connector(conn_cfg, Redactor(app.secrets))
    try:
        resp = conn.request("POST", "/webhooks/partner/", json_body={"n": 1}, idempotent=False)
        assert resp.status_code == 202
    finally:
        conn.close()
    # its checks, its secret, and the one-kind rule, as for the built-in kinds
    assert "[connectors[0].StaticSession]: expected a session token of at least 8" in problems(
        tmp_path, "    StaticSession: ${SHORT_TOKEN}\n", {"SHORT_TOKEN": "abc"}
    )
    assert "[connectors[0].StaticSession]: secret written in clear" in problems(
        tmp_path, "    StaticSession: abcdefgh123\n"
    )
    assert (
        "[connectors[0].StaticSession]: a connector has one way to log in; BearerToken and "
        "StaticSession are both set"
    ) in problems(tmp_path, "    BearerToken: ${ERP_TOKEN}\n    StaticSession: ${ERP_TOKEN}\n")


def test_an_unregistered_kind_is_an_unknown_option(tmp_path: Path) -> None:
    assert "[connectors[0].StaticSession]: unknown option 'StaticSession'" in problems(
        tmp_path, "    StaticSession: ${ERP_TOKEN}\n"
    )


# ------------------------------------------------------------------ the built-in kinds
B1 = """    Username: ${ERP_USERNAME}
    Password: ${ERP_PASSWORD}
    CookieLogin:
      Body: {CompanyDB: X, UserName: "{username}", Password: "{password}"}
"""
TOKEN = """    Username: ${ERP_USERNAME}
    Password: ${ERP_PASSWORD}
    TokenLogin: {Path: /login}
"""


@pytest.mark.parametrize(
    ("block", "kind"),
    [
        ("", type(None)),
        ("    BearerToken: ${ERP_TOKEN}\n", Bearer),
        ("    Username: ${ERP_USERNAME}\n    Password: ${ERP_PASSWORD}\n", Basic),
        (TOKEN, TokenLogin),  # Username/Password are the login's, not basic auth
        (B1, CookieLogin),
        ("    ClientAppId: ${ERP_CLIENT_ID}\n    ClientAppSecret: ${ERP_CLIENT_SECRET}\n"
         "    TenantUrl: https://login.example.com\n    OAuthTenant: t1\n", OAuth2),
    ],
)  # fmt: skip
def test_the_loader_picks_one_kind(tmp_path: Path, block: str, kind: type) -> None:
    assert type(load(tmp_path, block).auth) is kind


def test_each_kind_reads_its_own_options(tmp_path: Path) -> None:
    oauth = load(
        tmp_path,
        "    ClientAppId: ${ERP_CLIENT_ID}\n    ClientAppSecret: ${ERP_CLIENT_SECRET}\n"
        "    TenantUrl: https://login.example.com/\n    OAuthTenant: t1\n"
        "    OAuthScope: api://erp/.default\n",
    ).auth
    assert oauth == OAuth2(
        SANDBOX_ENV["ERP_CLIENT_ID"],
        SANDBOX_ENV["ERP_CLIENT_SECRET"],
        "https://login.example.com/t1/oauth2/token",
        "api://erp/.default",
    )
    assert oauth.urls() == ("https://login.example.com/t1/oauth2/token",)
    token = load(tmp_path, TOKEN.replace("{Path: /login}", "{Path: /login, Method: put}")).auth
    assert token == TokenLogin(path="/login", method="PUT")
    conn = load(tmp_path, B1)
    assert conn.auth == CookieLogin(
        path="/Login", body={"CompanyDB": "X", "UserName": "{username}", "Password": "{password}"}
    )
    assert conn.username == SANDBOX_ENV["ERP_USERNAME"]  # the credentials stay the connector's


def test_a_kinds_config_never_shows_its_secret(tmp_path: Path) -> None:
    for block in (
        "    BearerToken: ${ERP_TOKEN}\n",
        "    ClientAppId: ${ERP_CLIENT_ID}\n    ClientAppSecret: ${ERP_CLIENT_SECRET}\n"
        "    TokenUrl: /t\n",
    ):
        shown = repr(load(tmp_path, block).auth)
        assert SANDBOX_ENV["ERP_TOKEN"] not in shown
        assert SANDBOX_ENV["ERP_CLIENT_SECRET"] not in shown


def test_every_kind_reports_its_problems_at_once(tmp_path: Path) -> None:
    """One load, problems of three kinds' options, each on its key."""
    found = problems(
        tmp_path,
        "    ClientAppSecret: ${ERP_CLIENT_SECRET}\n"
        "    TokenLogin: {Path: /login, HeaderFormat: Token, Body: {login: x, password: hunter2}}\n"
        "    BearerToken: 42\n",
    )
    for expected in (
        "[connectors[0].ClientAppId]: OAuth2 needs ClientAppId with ClientAppSecret",
        "[connectors[0].TokenLogin.HeaderFormat]: must contain {token}",
        "[connectors[0].TokenLogin.Body]: 'password' must be '{password}'",
        "[connectors[0].BearerToken]: secret written in clear",
        "BearerToken and TokenLogin are both set",
    ):
        assert expected in found, found


def test_kinds_are_listed_once_and_a_registered_one_replaces_a_builtin() -> None:
    names = [k.name for k in auth.kinds()]
    assert names == ["bearer", "token_login", "cookie_login", "oauth2", "basic"]
    own = Kind("bearer", "BearerToken", frozenset({"BearerToken"}), frozenset(), lambda o, r: None)
    auth.register(own)
    try:
        assert [k for k in auth.kinds() if k.name == "bearer"] == [own]
    finally:
        auth.unregister("bearer")
    assert [k.name for k in auth.kinds()] == names

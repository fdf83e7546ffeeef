"""The sandbox ERP's logins: OAuth2 client credentials, a JSON-RPC session, SAP B1 cookies.

Shapes follow the public documentation of each: RFC 6749 §4.4 (form-encoded token request,
``access_token`` / ``expires_in``), JSON-RPC 2.0 (errors come back with HTTP 200 and an
``error`` member), SAP Business One Service Layer (``POST /b1s/v1/Login`` with ``CompanyDB``,
``UserName``, ``Password``; ``B1SESSION`` and ``ROUTEID`` cookies; ``SessionTimeout`` in
minutes; ``401`` with ``Invalid session`` once it lapses). ``POST /_sandbox/auth`` revokes every
credential issued (``{"revoke": true}``) or sets their lifetime, so tests can make them expire.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from typing import Any

from integrator.sandbox.base import Request, Response

__all__ = ["AuthRealm"]


class AuthRealm:
    """Issues credentials and says whether a request carries a live one."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        company_db: str = "SBODEMOTR",
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password, self.company_db = username, password, company_db
        self.lock = threading.Lock()
        self.live: dict[str, tuple[str, float]] = {}  # credential → (kind, expires at)
        self.token_ttl = 3600.0
        self.session_minutes = 30
        self.logins: dict[str, int] = {"oauth2": 0, "jsonrpc": 0, "b1": 0}
        self.refused = 0  # logins refused
        self.rejected = 0  # calls with a dead or unknown credential

    def _issue(self, kind: str, ttl: float) -> str:
        value = secrets.token_urlsafe(24)
        with self.lock:
            self.live[value] = (kind, time.monotonic() + ttl)
            self.logins[kind] += 1
        return value

    def _refuse(self) -> None:
        with self.lock:
            self.refused += 1

    def oauth_token(self, req: Request, _args: list[str]) -> Response:
        """``POST /oauth/token`` (form): grant_type=client_credentials, client_id, secret."""
        form = req.body if isinstance(req.body, dict) else {}
        if form.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type"})
        ok = _same(form.get("client_id"), self.client_id) and _same(
            form.get("client_secret"), self.client_secret
        )
        if not ok:
            self._refuse()
            return Response(401, {"error": "invalid_client"})
        token = self._issue("oauth2", self.token_ttl)
        return Response(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl)},
            {"Cache-Control": "no-store"},
        )

    def jsonrpc(self, req: Request, _args: list[str]) -> Response:
        """``POST /jsonrpc`` method ``login``, params ``{login, password}`` → a session id."""
        body = req.body if isinstance(req.body, dict) else {}
        rid = body.get("id")
        if body.get("method") != "login":
            return Response(200, _rpc_error(rid, -32601, "Method not found"))
        params = body.get("params")
        params = params if isinstance(params, dict) else {}
        if not (
            _same(params.get("login"), self.username)
            and _same(params.get("password"), self.password)
        ):
            self._refuse()
            return Response(200, _rpc_error(rid, 100, "Access Denied"))
        sid = self._issue("jsonrpc", self.token_ttl)
        answer = {"session_id": sid, "expires_in": int(self.token_ttl)}
        return Response(200, {"jsonrpc": "2.0", "id": rid, "result": answer})

    def b1_login(self, req: Request, _args: list[str]) -> Response:
        """``POST /b1s/v1/Login``: session cookies, or 401 with the Service Layer's error."""
        body = req.body if isinstance(req.body, dict) else {}
        if not (
            body.get("CompanyDB") == self.company_db
            and _same(body.get("UserName"), self.username)
            and _same(body.get("Password"), self.password)
        ):
            self._refuse()
            return Response(
                401,
                {"error": {"code": -304, "message": {"lang": "en-us", "value": "Fail to get "
                 "DB Credentials from SLD"}}},
            )  # fmt: skip
        sid = self._issue("b1", self.session_minutes * 60)
        return Response(
            200,
            {
                "odata.metadata": "$metadata#B1Sessions/@Element",
                "SessionId": sid,
                "Version": "1000190",
                "SessionTimeout": self.session_minutes,
            },
            cookies=[f"B1SESSION={sid}; path=/b1s; HttpOnly", "ROUTEID=.node1; path=/b1s"],
        )

    def control(self, req: Request) -> Response:
        """``POST /_sandbox/auth``: ``{"revoke": true, "token_ttl": s, "session_minutes": m}``."""
        spec = req.body if isinstance(req.body, dict) else {}
        with self.lock:
            if spec.get("revoke"):
                self.live.clear()
            self.token_ttl = float(spec.get("token_ttl", self.token_ttl))
            self.session_minutes = spec.get("session_minutes", self.session_minutes)
        return Response(200, {"ok": True})

    def accepts(self, headers: dict[str, str]) -> bool:
        """True when the request carries a live credential of any kind."""
        found = []
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            found.append(auth[7:])
        if auth.startswith("Basic "):
            pair = f"{self.username}:{self.password}".encode()
            if hmac.compare_digest(auth[6:].encode(), base64.b64encode(pair)):
                return True
        if headers.get("x-session-id"):
            found.append(headers["x-session-id"])
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "B1SESSION":
                found.append(value)
        now = time.monotonic()
        with self.lock:
            for value in found:
                live = self.live.get(value)
                if live and live[1] > now:
                    return True
            if found:
                self.rejected += 1
        return False

    def stats(self) -> dict[str, Any]:
        """Logins per kind, refused logins, calls rejected for a dead credential."""
        with self.lock:
            return {"logins": dict(self.logins), "refused": self.refused, "rejected": self.rejected}


def _same(given: Any, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _rpc_error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}

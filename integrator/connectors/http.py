"""One pooled ``requests.Session`` per connector: auth, headers, timeouts, error mapping.

Status codes and transport failures map to the error classes in :mod:`integrator.errors` here
and nowhere else. Messages name the method, the URL path and the status, never a header or a
query string, so no credential can leak through them.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog

from integrator.config.model import ConnectorConfig
from integrator.connectors.auth import Auth, LoginRefused, build_auth
from integrator.connectors.limits import backoff, limiter_for, retry_after_seconds
from integrator.connectors.redact import Redactor
from integrator.connectors.transport import LeanAdapter, prepare
from integrator.errors import (
    AmbiguousWriteError,
    AuthenticationError,
    OrderError,
    PermanentError,
    RetriableError,
    UnreadableAnswer,
)
from integrator.metrics import Metrics

__all__ = ["Connector", "parse_json"]

log = structlog.get_logger("integrator.http")

RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
_MAX_ERROR_BODY = 200
MAX_BODY_BYTES = 16 * 1024 * 1024


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(resp: requests.Response, what: str, connector: str = "") -> Any:
    """The JSON body of ``resp``; an UnreadableAnswer (a retriable failure of the server,
    tagged with ``connector`` for the circuit breaker) when it is too large, not UTF-8, not
    JSON (NaN and Infinity included), or nested too deep."""
    if not resp.content:
        return None
    if len(resp.content) > MAX_BODY_BYTES:
        why = f"{len(resp.content):,} bytes, more than the {MAX_BODY_BYTES:,} an answer may have"
    else:
        try:
            return json.loads(resp.content.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            why = "a body that is not UTF-8"
        except RecursionError:
            why = "JSON nested too deep to read"
        except ValueError:  # not JSON, NaN/Infinity, a number too long to convert
            ctype = resp.headers.get("Content-Type", "unknown content type")
            why = f"a body that is not JSON ({ctype})"
    exc = UnreadableAnswer(
        f"{what} answered {resp.status_code} with {why}", status=resp.status_code
    )
    exc.connector, exc.failure = connector, "unreadable answer"
    raise exc


class Connector:
    """A named endpoint: base URL, auth, default headers, timeout, and a pooled session."""

    def __init__(
        self,
        config: ConnectorConfig,
        redactor: Redactor,
        pool_size: int = 10,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.redactor = redactor
        self.metrics = metrics or Metrics()
        self.session = requests.Session()
        adapter = LeanAdapter(pool_maxsize=max(pool_size, 2))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(dict(config.headers))
        self._freeze_environment()
        self.limiter = limiter_for(config.host, config.max_in_flight, config.requests_per_second)
        self._sleep = time.sleep  # between tries; tests replace it
        self.auth: Auth = build_auth(config, self._send_login, redactor, self.url)

    def _freeze_environment(self) -> None:
        """Read proxies and CA bundle from the environment once, not on every request.

        requests re-reads the whole environment per request when ``trust_env`` is on (most of
        its CPU on a busy flow); the settings cannot change while the process runs.
        """
        if not self.config.host:
            return
        env = self.session.merge_environment_settings(self.config.host, {}, None, None, None)
        self.session.proxies.update(env.get("proxies") or {})
        self.session.verify = env.get("verify", True)
        if env.get("cert"):
            self.session.cert = env["cert"]
        self.session.trust_env = False

    @property
    def name(self) -> str:
        """The connector's Name."""
        return self.config.name

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (absolute URLs pass through)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.config.host + "/" + path.lstrip("/")

    def describe(self, method: str, url: str) -> str:
        """``POST erp:/api/orders/``: what a message may show of a request."""
        return f"{method} {self.name}:{urlsplit(url).path}"

    def login(self) -> None:
        """Log in now when the connector logs in (LoginRefused, a FatalError, when refused).

        Calls log in by themselves when needed; the login stage calls this first so that a
        refused login stops the run before any order is read.
        """
        self.auth.login()

    def _send_login(
        self, method: str, url: str, body: Any, form: dict[str, str] | None
    ) -> requests.Response:
        """A login call: no credentials but the ones in its body, no retries."""
        what = self.describe(method, url)
        try:
            with self.limiter.slot():
                resp = self.session.request(
                    method, url, json=body, data=form, timeout=self.config.timeout
                )
        except requests.RequestException as exc:
            raise LoginRefused(f"login {what} failed: {_reason(exc)}") from None
        self.metrics.http_status(self.name, resp.status_code)
        return resp

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
        retry_unsafe: bool = False,
        ok_status: frozenset[int] = frozenset(),
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """Send one request, retried by the connector's policy; raise an OrderError subclass.

        Retried: timeouts, connection errors, 5xx, 408 and 429, with exponential backoff and
        jitter (``Retry-After`` honoured, capped). A non-idempotent request is retried only
        when the failure proves it was not processed (never sent, or 429), or when
        ``retry_unsafe`` (an idempotency key makes a repeat harmless). A non-idempotent
        request that may have reached the server and is not retried raises
        AmbiguousWriteError. ``ok_status``: non-2xx codes the caller handles itself.
        """
        cfg = self.config
        attempts = 1 if cfg.retry_disabled else cfg.retry_attempts
        attempt = 1
        relogged = False
        while True:
            auth_headers, generation = self.auth.current()  # LoginRefused: the run stops
            try:
                return self._attempt(
                    method, path, json_body, params, ok_status, {**auth_headers, **(headers or {})}
                )
            except PermanentError as exc:
                if exc.status not in AUTH_STATUS:
                    raise
                if relogged or not self.auth.refreshable:
                    raise self._refused(exc, relogged) from None
                # The credential expired or was revoked: log in again, once. A 401/403 means
                # the call was not processed, so repeating a write is safe.
                self.auth.expired(generation)
                relogged = True
                log.info("login again", connector=self.name, after=str(exc))
            except RetriableError as exc:
                unsafe = not idempotent and exc.reached and exc.status != 429
                paused = exc.status == 429 and exc.retry_after is not None
                if paused:  # the whole host waits, every flow's requests included
                    self.limiter.pause(min(exc.retry_after or 0.0, cfg.retry_cap))
                if attempt >= attempts or (unsafe and not retry_unsafe):
                    if unsafe:
                        ambiguous = AmbiguousWriteError(
                            f"{exc}; the ERP may have the order", status=exc.status
                        )
                        ambiguous.connector, ambiguous.failure = exc.connector, exc.failure
                        raise ambiguous from None
                    raise
                if paused:
                    delay = 0.0  # the limiter holds the next try until the pause ends
                elif exc.retry_after is not None:
                    delay = min(exc.retry_after, cfg.retry_cap)
                else:
                    delay = backoff(attempt, cfg.retry_base, cfg.retry_cap)
                log.info("retrying", request=self.describe(method, self.url(path)), error=str(exc),
                         attempt=attempt, delay=round(delay, 3))  # fmt: skip
                self._sleep(delay)
                attempt += 1

    def read_object(self, path: str) -> dict[str, Any] | None:
        """``GET path`` as a JSON object; None when it is absent, unreadable or not an object
        (for questions whose answer may be "cannot tell")."""
        try:
            resp = self.request("GET", path, ok_status=frozenset({404}))
            found = parse_json(resp, self.describe("GET", self.url(path)), self.name)
        except OrderError:
            return None
        return found if resp.status_code != 404 and isinstance(found, dict) else None

    def _refused(self, exc: PermanentError, relogged: bool) -> AuthenticationError:
        """A 401/403 that a fresh login did not cure (or a static credential): the run stops."""
        after = "after a fresh login" if relogged else "to its static credentials"
        return AuthenticationError(
            f"{exc} ({after}): the credentials of connector {self.name!r} are refused; check "
            "them. The run stopped; no order was charged",
            connector=self.name,
        )

    def _attempt(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: dict[str, Any] | None,
        ok_status: frozenset[int],
        headers: dict[str, str] | None,
    ) -> requests.Response:
        """One try, its failure mapped to an error class."""
        url = self.url(path)
        what = self.describe(method, url)
        data = None
        headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            with self.limiter.slot():
                resp = self.session.send(
                    prepare(self.session, method, url, params=params, headers=headers, body=data),
                    timeout=self.config.timeout,
                )
        except requests.ConnectTimeout:
            raise self._system(
                RetriableError(f"{what}: connection timed out", reached=False), "timeout"
            ) from None
        except requests.ConnectionError as exc:
            reason = _reason(exc)
            raise self._system(
                RetriableError(
                    f"{what}: connection failed ({reason})", reached=not _never_sent(exc)
                ),
                reason,
            ) from None
        except requests.Timeout:
            raise self._system(
                RetriableError(f"{what}: no answer within {self.config.timeout:g}s"), "timeout"
            ) from None
        except requests.RequestException as exc:
            raise self._system(
                RetriableError(f"{what}: {type(exc).__name__}"), type(exc).__name__
            ) from None
        self.metrics.http_status(self.name, resp.status_code)
        if resp.ok or resp.status_code in ok_status:
            return resp
        raise self.status_error(what, resp)

    def status_error(self, what: str, resp: requests.Response) -> OrderError:
        """The error class for a non-2xx answer, with a short, scrubbed body excerpt."""
        excerpt = self.redactor.scrub(resp.text[:_MAX_ERROR_BODY].strip().replace("\n", " "))
        msg = f"{what} answered {resp.status_code}" + (f": {excerpt}" if excerpt else "")
        if resp.status_code in RETRIABLE_STATUS:
            exc = RetriableError(
                msg,
                status=resp.status_code,
                retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
            )
            if resp.status_code >= 500:
                self._system(exc, f"{resp.status_code // 100}xx")
            return exc
        return PermanentError(msg, status=resp.status_code)

    def _system(self, exc: RetriableError, failure: str) -> RetriableError:
        """Tag a failure of the system with this connector and its class (circuit breaker)."""
        exc.connector, exc.failure = self.name, failure
        return exc

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "remote end closed the connection"
    if "Connection refused" in text:
        return "connection refused"
    return type(exc).__name__


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the failure proves the request never reached the server."""
    text = str(exc.args[0]) if exc.args else ""
    return any(
        s in text
        for s in (
            "NewConnectionError",
            "Connection refused",
            "Name or service not known",
            "Failed to resolve",
        )
    )

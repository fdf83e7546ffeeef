"""One pooled ``requests.Session`` per connector: auth, headers, timeouts, error mapping.

Status codes and transport failures map to the error classes in :mod:`integrator.errors` here
and nowhere else. Messages name the method, the URL path and the status, never a header or a
query string, so no credential can leak through them.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import jmespath
import requests
import structlog
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth

from integrator.config.model import ConnectorConfig, TokenLogin
from integrator.connectors.limits import backoff, limiter_for, retry_after_seconds
from integrator.connectors.redact import Redactor
from integrator.errors import (
    AmbiguousWriteError,
    FatalError,
    OrderError,
    PermanentError,
    RetriableError,
)
from integrator.metrics import Metrics

__all__ = ["Connector", "HeaderAuth", "parse_json"]

log = structlog.get_logger("integrator.http")

RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_ERROR_BODY = 200
MAX_BODY_BYTES = 16 * 1024 * 1024


class HeaderAuth(AuthBase):
    """Sets one header (``Authorization: Token …`` or ``Bearer …``) on every request."""

    def __init__(self, header: str, value: str) -> None:
        self.header, self.value = header, value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers[self.header] = self.value
        return r


def parse_json(resp: requests.Response, what: str) -> Any:
    """The JSON body of ``resp``; a clear PermanentError when it is not JSON or too large."""
    if not resp.content:
        return None
    if len(resp.content) > MAX_BODY_BYTES:
        raise PermanentError(
            f"{what} answered {resp.status_code} with {len(resp.content):,} bytes, more than "
            f"the {MAX_BODY_BYTES:,} an answer may have",
            status=resp.status_code,
        )
    try:
        return resp.json()
    except ValueError:
        ctype = resp.headers.get("Content-Type", "unknown content type")
        raise PermanentError(
            f"{what} answered {resp.status_code} with a body that is not JSON ({ctype})",
            status=resp.status_code,
        ) from None


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
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 2), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(dict(config.headers))
        self._freeze_environment()
        self.limiter = limiter_for(config.host, config.max_in_flight, config.requests_per_second)
        self._sleep = time.sleep  # between tries; tests replace it
        self._login_lock = threading.Lock()
        if config.bearer_token:
            self.session.auth = HeaderAuth("Authorization", f"Bearer {config.bearer_token}")
        elif config.username and config.token_login is None:
            self.session.auth = HTTPBasicAuth(config.username, config.password)

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
        """Run the token login when configured; FatalError when it is refused."""
        tl: TokenLogin | None = self.config.token_login
        if tl is None:
            return
        with self._login_lock:
            url = self.url(tl.path)
            what = self.describe(tl.method, url)
            body = {"username": self.config.username, "password": self.config.password}
            try:
                resp = self.session.request(
                    tl.method, url, json=body, timeout=self.config.timeout, auth=None
                )
            except requests.RequestException as exc:
                raise FatalError(f"login {what} failed: {type(exc).__name__}") from None
            if resp.status_code in (400, 401, 403):
                raise FatalError(
                    f"login {what} refused ({resp.status_code}): check the username and password "
                    f"of connector {self.name!r}"
                )
            if not resp.ok:
                raise FatalError(f"login {what} answered {resp.status_code}")
            try:
                token = jmespath.search(tl.token_path, resp.json())
            except ValueError:
                token = None
            if not isinstance(token, str) or not token:
                raise FatalError(f"login {what}: no token at {tl.token_path!r} in the answer")
            self.redactor.add([token])
            self.session.auth = HeaderAuth(tl.header, tl.header_format.format(token=token))

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
        while True:
            try:
                return self._attempt(method, path, json_body, params, ok_status, headers)
            except RetriableError as exc:
                unsafe = not idempotent and exc.reached and exc.status != 429
                paused = exc.status == 429 and exc.retry_after is not None
                if paused:  # the whole host waits, every flow's requests included
                    self.limiter.pause(min(exc.retry_after or 0.0, cfg.retry_cap))
                if attempt >= attempts or (unsafe and not retry_unsafe):
                    if unsafe:
                        raise AmbiguousWriteError(
                            f"{exc}; the ERP may have the order", status=exc.status
                        ) from None
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
                resp = self.session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self.config.timeout,
                )
        except requests.ConnectTimeout:
            raise RetriableError(f"{what}: connection timed out", reached=False) from None
        except requests.ConnectionError as exc:
            raise RetriableError(
                f"{what}: connection failed ({_reason(exc)})", reached=not _never_sent(exc)
            ) from None
        except requests.Timeout:
            raise RetriableError(f"{what}: no answer within {self.config.timeout:g}s") from None
        except requests.RequestException as exc:
            raise RetriableError(f"{what}: {type(exc).__name__}") from None
        self.metrics.http_status(self.name, resp.status_code)
        if resp.ok or resp.status_code in ok_status:
            return resp
        raise self.status_error(what, resp)

    def status_error(self, what: str, resp: requests.Response) -> OrderError:
        """The error class for a non-2xx answer, with a short, scrubbed body excerpt."""
        excerpt = self.redactor.scrub(resp.text[:_MAX_ERROR_BODY].strip().replace("\n", " "))
        msg = f"{what} answered {resp.status_code}" + (f": {excerpt}" if excerpt else "")
        if resp.status_code in RETRIABLE_STATUS:
            return RetriableError(
                msg,
                status=resp.status_code,
                retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
            )
        return PermanentError(msg, status=resp.status_code)

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

"""One pooled ``requests.Session`` per connector: auth, headers, timeouts, error mapping.

Status codes and transport failures map to the error classes in :mod:`integrator.errors` here
and nowhere else. Messages name the method, the URL path and the status, never a header or a
query string, so no credential can leak through them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import structlog

from integrator.config.model import ConnectorConfig
from integrator.connectors.answers import AnswerRules, Outcome
from integrator.connectors.auth import Auth, LoginRefused, build_auth
from integrator.connectors.bodies import answer_of, json_bytes, parse_json
from integrator.connectors.limits import backoff, limiter_for, retry_after_seconds
from integrator.connectors.redact import Redactor
from integrator.connectors.transport import MAX_ANSWER_BYTES, LeanAdapter, prepare
from integrator.errors import (
    AmbiguousWriteError,
    AuthenticationError,
    ErpRefused,
    OrderError,
    PermanentError,
    RetriableError,
    SessionExpired,
    UnreadableAnswer,
)
from integrator.metrics import Metrics

__all__ = ["Connector", "answer_of", "json_bytes", "parse_json"]

log = structlog.get_logger("integrator.http")

RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
_MAX_ERROR_BODY = 200
_MAX_ERP_MESSAGE = 300  # characters of the ERP's own message an error keeps
MAX_BODY_BYTES = MAX_ANSWER_BYTES  # a connector's MaxAnswerBytes by default
MAX_REDIRECTS = 5  # a GET follows at most this many, all within its own scheme, host and port
_READS = frozenset({"GET", "HEAD", "OPTIONS"})  # any other method's redirect: a write's


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
        adapter = LeanAdapter(
            pool_maxsize=max(pool_size, 2), max_answer_bytes=config.max_answer_bytes
        )
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

    @functools.cached_property
    def fields(self) -> dict[str, Any]:
        """What expressions read as ``connector`` (:meth:`ConnectorConfig.fields`)."""
        return self.config.fields()

    def login_answer(self) -> Any:
        """The answer of the connector's login (logging in first when needed); None when it
        does not log in by a call whose answer is kept."""
        self.auth.current()
        return getattr(self.auth, "answer", None)

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
        self,
        method: str,
        url: str,
        body: Any,
        form: dict[str, str] | None,
        content_type: str = "",
    ) -> requests.Response:
        """A login call: no credentials but the ones in its body, no retries, no redirects
        (a redirect would carry the password body to wherever it points). ``body``: a JSON
        value, or bytes already encoded as ``content_type``."""
        what = self.describe(method, url)
        raw = isinstance(body, bytes)
        try:
            with self.limiter.slot():
                resp = self.session.request(
                    method,
                    url,
                    json=None if raw else body,
                    data=body if raw else form,
                    headers={"Content-Type": content_type} if raw else None,
                    timeout=self.config.timeout,
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            raise LoginRefused(f"login {what} failed: {_reason(exc)}") from None
        self.metrics.http_status(self.name, resp.status_code)
        if 300 <= resp.status_code < 400:
            to = _origin(urljoin(url, resp.headers.get("Location") or ""))
            raise LoginRefused(
                f"login {what} answered {resp.status_code}, a redirect to {to}: a login follows "
                "no redirect (its password is never sent on); check the connector's Host and "
                "login Path"
            )
        unreadable = getattr(resp, "unreadable", "")
        if unreadable:
            raise LoginRefused(f"login {what} answered {resp.status_code} with {unreadable}")
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
        body: bytes | Callable[[], tuple[bytes, str]] | None = None,
        content_type: str = "application/json",
        answer: AnswerRules | None = None,
    ) -> requests.Response:
        """Send one request, retried by the connector's policy; raise an OrderError subclass.

        Retried: timeouts, connection errors, 5xx, 408 and 429, with exponential backoff and
        jitter (``Retry-After`` honoured, capped). A non-idempotent request is retried only
        when the failure proves it was not processed (never sent, or 429), or when
        ``retry_unsafe`` (an idempotency key makes a repeat harmless). A non-idempotent
        request that may have reached the server and is not retried raises
        AmbiguousWriteError. ``ok_status``: non-2xx codes the caller handles itself. ``body``:
        a body already encoded (:func:`json_bytes`), instead of ``json_body``, of type
        ``content_type``; a callable is asked for the body and its type on each try (a body
        holding the login's session is made again after a new login).

        ``answer``: the stage's answer rules (:mod:`integrator.connectors.answers`), which
        read the answer (JSON or XML; :func:`answer_of` gives it to the caller) unless its
        status is one of ``ok_status`` and not 2xx (the caller decides those): refused →
        ErpRefused; session expired → log in again once and repeat (AuthenticationError
        when the new session is refused too); may have landed → a retriable failure that
        reached the ERP (a write that cannot be repeated: AmbiguousWriteError).

        Redirects: a GET follows up to 5 within its own scheme, host and port; one to another
        host is a retriable failure of the server; any other method's redirect means the write
        may have landed (AmbiguousWriteError). A JSON body that JSON cannot carry (NaN, a set)
        is a PermanentError before anything is sent.
        """
        cfg = self.config
        if body is None and json_body is not None:
            body = json_bytes(json_body, self.describe(method, self.url(path)))
        attempts = 1 if cfg.retry_disabled else cfg.retry_attempts
        attempt = 1
        relogged = False
        while True:
            auth_headers, generation = self.auth.current()  # LoginRefused: the run stops
            try:
                payload, ctype = body() if callable(body) else (body, content_type)
                resp = self._attempt(
                    method,
                    path,
                    payload,
                    params,
                    ok_status,
                    {**auth_headers, **(headers or {})},
                    ctype,
                    answer,
                )
                if answer is not None and resp.ok:
                    # A non-2xx status the caller takes (query_check's not_found and failure
                    # codes) is decided by its status: a 404 ``{"error": "not found"}`` under
                    # ``refused: error`` is "not found", never a refusal of every new order.
                    self.judge(method, path, resp, answer)
                return resp
            except PermanentError as exc:
                if exc.status not in AUTH_STATUS and not isinstance(exc, SessionExpired):
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
                held = 0.0  # how long the paused host holds the next try
                if paused:  # the whole host waits, every flow's requests included
                    held = self.limiter.pause(min(exc.retry_after or 0.0, cfg.retry_cap))
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
                # The wait logged is the one the next try will have: a paused host's included.
                log.info("retrying", request=self.describe(method, self.url(path)), error=str(exc),
                         attempt=attempt, delay=round(max(delay, held), 3))  # fmt: skip
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
        """A 401/403 that a fresh login did not cure (or a static credential): the run stops.
        A session that the answer rules call expired right after a fresh login is no proof that
        the credentials are wrong (the login took them): the message says what happened."""
        if isinstance(exc, SessionExpired):
            what = (
                "the session expired again right after a fresh login"
                if relogged
                else f"connector {self.name!r} cannot log in again (its credential is static)"
            )
            return AuthenticationError(
                f"{exc}: {what}. Check the stage's session_expired rule (does it match a good "
                "answer too?) and the ERP's sessions. The run stopped; no order was charged",
                connector=self.name,
            )
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
        body: bytes | None,
        params: dict[str, Any] | None,
        ok_status: frozenset[int],
        headers: dict[str, str] | None,
        content_type: str = "application/json",
        answer: AnswerRules | None = None,
    ) -> requests.Response:
        """One try (with the redirects a GET may follow, all within the Timeout), its failure
        mapped to an error class."""
        url = self.url(path)
        what = self.describe(method, url)
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = content_type
        timeout = self.config.timeout
        deadline = time.monotonic() + timeout
        hops = 0
        while True:
            resp = self._send(what, method, url, params, headers, body, timeout)
            status = resp.status_code
            if not 300 <= status < 400 or status in ok_status:
                break
            url, params = self._redirect(what, method, url, resp, hops), None
            hops += 1
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise self._system(
                    RetriableError(f"{what}: no answer within {self.config.timeout:g}s"),
                    "timeout",
                )
        if resp.ok or status in ok_status:
            return resp
        if answer is not None and resp.content:
            # A SOAP 1.1 Fault comes with a 500: the rules read it before the status code
            # does; an error page they cannot read leaves it to the status code.
            with contextlib.suppress(UnreadableAnswer):
                self.judge(method, path, resp, answer)
        raise self.status_error(what, resp)

    def judge(self, method: str, path: str, resp: requests.Response, rules: AnswerRules) -> None:
        """Apply the answer rules to ``resp`` (its parsed answer kept for :func:`answer_of`);
        raise what the verdict means. A 2xx answer that cannot be read is left to the caller
        (a write records it as sent)."""
        what = self.describe(method, self.url(path))
        try:
            data = answer_of(resp, what, self.name)
        except UnreadableAnswer:
            if resp.ok:
                return
            raise
        verdict = rules.judge(data, resp.status_code)
        if verdict is None or verdict.outcome is Outcome.OK:
            return
        said = self.redactor.scrub(verdict.message)[:_MAX_ERP_MESSAGE]
        said = f": {said}" if said else ""
        status = resp.status_code
        if verdict.outcome is Outcome.SESSION_EXPIRED:
            raise SessionExpired(
                f"{what} answered {status}, a session that expired ({verdict.rule}){said}",
                status=status,
            )
        if verdict.rule.startswith("SOAP"):  # the Fault says what it is
            text = f"{what} answered {status} with a {verdict.rule}{said}"
        elif verdict.outcome is Outcome.REFUSED:
            text = f"{what} answered {status}: the ERP said no ({verdict.rule}){said}"
        else:
            text = (
                f"{what} answered {status}, an answer that does not say whether it was done "
                f"({verdict.rule}){said}"
            )
        if verdict.outcome is Outcome.REFUSED:
            raise ErpRefused(text, status=status)
        raise RetriableError(text, status=status)

    def _send(
        self,
        what: str,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float,
    ) -> requests.Response:
        """One HTTP exchange, within ``timeout`` seconds in all, redirects not followed."""
        try:
            with self.limiter.slot():
                resp = self.session.send(
                    prepare(self.session, method, url, params=params, headers=headers, body=body),
                    timeout=timeout,
                    allow_redirects=False,
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
        return resp

    def _redirect(
        self, what: str, method: str, url: str, resp: requests.Response, hops: int
    ) -> str:
        """Where a 3xx answer may be followed (a GET, to its own scheme, host and port, at most
        MAX_REDIRECTS times), or the error it is. Only the URL changes: the request's headers
        (credentials included) stay with its host, so they never reach another."""
        status = resp.status_code
        location = resp.headers.get("Location")
        here = _origin(url)
        there = _origin(urljoin(url, location)) if location else ""
        if method.upper() not in _READS:
            to = f" to {there}" if there and there != here else ""
            ambiguous = AmbiguousWriteError(
                f"{what} answered a redirect ({status}{to}); a write is never sent again to a "
                "redirect, and the ERP may have the order",
                status=status,
            )
            ambiguous.connector, ambiguous.failure = self.name, "redirect"
            raise ambiguous
        if not location:
            problem = f"answered {status} without a Location to follow"
        elif there != here:
            problem = (
                f"answered {status}, a redirect from {here} to {there}; a redirect to another "
                "host is not followed (check the connector's Host)"
            )
        elif hops >= MAX_REDIRECTS:
            problem = f"answered {status}: more than {MAX_REDIRECTS} redirects"
        else:
            return urljoin(url, location)
        raise self._system(RetriableError(f"{what} {problem}", status=status), "redirect")

    def status_error(self, what: str, resp: requests.Response) -> OrderError:
        """The error class for a non-2xx answer, with a short, scrubbed body excerpt."""
        text = resp.text
        if "xml" in (resp.headers.get("Content-Type") or "").lower():  # a SOAP Fault: its text
            from integrator.connectors.xmlbody import fault_text

            text = fault_text(resp.content) or text
        excerpt = self.redactor.excerpt(text, _MAX_ERROR_BODY).strip().replace("\n", " ")
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


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL: what a redirect message may show of it (never its
    userinfo, path or query)."""
    try:
        p = urlsplit(url)
        port = p.port or (443 if p.scheme == "https" else 80)
    except ValueError:
        return "an unreadable URL"
    return f"{p.scheme}://{p.hostname or ''}:{port}"


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    if "not HTTP it can read" in text:
        return text.split("Connection aborted: ", 1)[-1]
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

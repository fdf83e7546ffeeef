"""A lean transport adapter for ``requests``: keep-alive HTTP/1.1 straight over ``http.client``.

requests' default adapter goes through urllib3, which costs about three times what
``http.client`` itself costs per call (URL re-parsing, pool-key normalisation, protocol
``isinstance`` checks, response wrappers). A flow makes a dozen calls per order and its workers
share one GIL, so that CPU becomes latency on every order's critical path. This adapter keeps
requests' API, sessions, auth hooks, redirects and exceptions, and replaces only the wire part:

* one LIFO pool of ``http.client`` connections per (scheme, host, port), ``pool_maxsize`` kept;
* a pooled connection that the server has closed (readable at rest) is dropped before reuse;
* the body is read whole (the runner never streams), and the connection goes back to the pool
  unless the server asked to close it;
* failures raise the requests exception urllib3's adapter would: ``ConnectTimeout``,
  ``ReadTimeout``, ``ConnectionError`` (a refused connection says ``NewConnectionError`` and
  ``Connection refused``, which the connector reads as "never sent").

Requests that need what it does not do (a proxy, a client certificate, streaming, or HTTPS with
a custom CA bundle or ``verify=False``) go to requests' own ``HTTPAdapter``.
"""

from __future__ import annotations

import http.client
import queue
import select
import socket
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import DEFAULT_CA_BUNDLE_PATH, BaseAdapter, HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, requote_uri

__all__ = ["LeanAdapter", "prepare"]

_Key = tuple[str, str, int]


def prepare(
    session: requests.Session,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> requests.PreparedRequest:
    """The request ``session.request`` would prepare for the runner's calls, at a third of the
    CPU: the URL requoted and its ``params`` appended (``None`` values left out, lists
    repeated), the session's headers under ``headers``, its cookies, a bytes body.

    ``Session.request`` merges settings that a connector fixes once (proxies, verify, auth,
    environment) on every call; the runner's calls need none of that.
    """
    if params:
        query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
        if query:
            url += ("&" if "?" in url else "?") + query
    p = requests.PreparedRequest()
    p.method = method.upper()
    p.url = requote_uri(url)
    merged: CaseInsensitiveDict[str] = CaseInsensitiveDict(session.headers)  # type: ignore[arg-type]
    if headers:
        merged.update(headers)
    if body is not None:
        merged["Content-Length"] = str(len(body))
    elif p.method in ("POST", "PUT", "PATCH"):
        merged["Content-Length"] = "0"
    p.headers = merged
    p.body = body
    p.hooks = {"response": []}
    if len(session.cookies) and "Cookie" not in merged:
        p.prepare_cookies(session.cookies)
    return p


class _Raw:
    """What ``extract_cookies_to_jar`` reads off ``Response.raw``: the http.client response."""

    def __init__(self, original: http.client.HTTPResponse) -> None:
        self._original_response = original


class LeanAdapter(BaseAdapter):
    """HTTP(S) with keep-alive over ``http.client``; thread-safe."""

    def __init__(self, pool_maxsize: int = 10) -> None:
        super().__init__()
        self.pool_maxsize = pool_maxsize
        self._pools: dict[_Key, queue.LifoQueue[http.client.HTTPConnection]] = {}
        self._fallback = HTTPAdapter(pool_maxsize=pool_maxsize, max_retries=0)
        # The CA bundle requests itself trusts by default (certifi's), not the system's.
        self._ssl = ssl.create_default_context(cafile=DEFAULT_CA_BUNDLE_PATH)

    # -------------------------------------------------------------------- pool
    def _pool(self, key: _Key) -> queue.LifoQueue[http.client.HTTPConnection]:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools.setdefault(key, queue.LifoQueue(self.pool_maxsize))
        return pool

    def _connection(
        self, key: _Key, connect_timeout: float | None
    ) -> tuple[http.client.HTTPConnection, bool]:
        """A pooled connection still open, or a new one; and whether it was reused."""
        pool = self._pool(key)
        while True:
            try:
                conn = pool.get_nowait()
            except queue.Empty:
                break
            if conn.sock is not None and not _dropped(conn.sock):
                return conn, True
            conn.close()
        scheme, host, port = key
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        return conn, False

    def _release(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        try:
            self._pool(key).put_nowait(conn)
        except queue.Full:
            conn.close()

    # -------------------------------------------------------------------- send
    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request; see the module docstring for what goes to the fallback."""
        url = request.url or ""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if (
            stream
            or cert
            or (proxies and (proxies.get(scheme) or proxies.get("all")))
            or (scheme == "https" and verify is not True)
            or scheme not in ("http", "https")
            or not isinstance(request.body, bytes | str | None)
        ):
            return self._fallback.send(request, stream, timeout, verify, cert, proxies)
        connect_timeout, read_timeout = (
            timeout if isinstance(timeout, tuple) else (timeout, timeout)
        )
        host = parts.hostname or ""
        key = (scheme, host, parts.port or (443 if scheme == "https" else 80))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn, reused = self._connection(key, connect_timeout)
        try:
            if conn.sock is None:
                conn.connect()  # sets TCP_NODELAY
            sock: socket.socket = conn.sock
            sock.settimeout(read_timeout)
            body = request.body
            conn.putrequest(request.method or "GET", path, skip_accept_encoding=True)
            headers = request.headers
            for k, v in headers.items():
                conn.putheader(k, v)
            if body is not None and "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body.encode("utf-8") if isinstance(body, str) else body)
            resp = conn.getresponse()
            content = resp.read()
        except BaseException as exc:
            connected = reused or conn.sock is not None  # before close() forgets the socket
            conn.close()
            raise _mapped(exc, request, connected=connected) from exc
        if resp.will_close:
            conn.close()
        else:
            self._release(key, conn)
        return self._response(request, resp, content, url)

    def _response(
        self,
        request: requests.PreparedRequest,
        resp: http.client.HTTPResponse,
        content: bytes,
        url: str,
    ) -> requests.Response:
        r = requests.Response()
        r.status_code = resp.status
        r.headers = CaseInsensitiveDict(resp.getheaders())
        r.encoding = get_encoding_from_headers(r.headers)
        r.reason = resp.reason
        r.url = url
        r.request = request
        r.connection = self  # type: ignore[assignment]  # what requests reads: close()
        coding = (r.headers.get("content-encoding") or "").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate") and content:
            try:
                wbits = 16 + zlib.MAX_WBITS if "gzip" in coding else zlib.MAX_WBITS
                content = zlib.decompress(content, wbits)
            except zlib.error:
                if coding != "deflate":
                    raise requests.exceptions.ContentDecodingError(
                        "the answer says gzip but is not", request=request
                    ) from None
                content = zlib.decompress(content, -zlib.MAX_WBITS)  # raw deflate
        r._content = content
        r._content_consumed = True  # type: ignore[attr-defined]
        if "set-cookie" in r.headers:
            r.raw = _Raw(resp)
            extract_cookies_to_jar(r.cookies, request, r.raw)  # type: ignore[no-untyped-call]
        return r

    def close(self) -> None:
        """Close every pooled connection."""
        for pool in self._pools.values():
            while True:
                try:
                    pool.get_nowait().close()
                except queue.Empty:
                    break
        self._fallback.close()


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection was closed by the server (readable means EOF or junk)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _mapped(
    exc: BaseException, request: requests.PreparedRequest, *, connected: bool
) -> BaseException:
    """The requests exception for a failure of the wire."""
    if not isinstance(exc, OSError | http.client.HTTPException):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        if not connected:
            return requests.ConnectTimeout(f"connect timed out: {exc}", request=request)
        return requests.ReadTimeout(f"read timed out: {exc}", request=request)
    if isinstance(exc, ConnectionRefusedError):
        return requests.ConnectionError(
            f"NewConnectionError: Connection refused ({exc})", request=request
        )
    if isinstance(exc, socket.gaierror):
        return requests.ConnectionError(
            f"NewConnectionError: Failed to resolve ({exc})", request=request
        )
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(str(exc), request=request)
    if isinstance(exc, http.client.RemoteDisconnected):
        return requests.ConnectionError(
            f"Connection aborted: RemoteDisconnected ({exc})", request=request
        )
    return requests.ConnectionError(f"Connection aborted: {type(exc).__name__} ({exc})",
                                    request=request)  # fmt: skip

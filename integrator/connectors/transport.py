"""A lean transport adapter for ``requests``: keep-alive HTTP/1.1 straight over ``http.client``,
with a total deadline and a size cap on every call.

requests' default adapter goes through urllib3, which costs about three times what
``http.client`` itself costs per call (URL re-parsing, pool-key normalisation, protocol
``isinstance`` checks, response wrappers). A flow makes a dozen calls per order and its workers
share one GIL, so that CPU becomes latency on every order's critical path. This adapter keeps
requests' API, sessions, hooks and exceptions, and replaces only the wire part:

* one LIFO pool of ``http.client`` connections per (scheme, host, port, proxy, TLS settings),
  ``pool_maxsize`` kept; a pooled connection that the server has closed is dropped before reuse;
* **a deadline per call**: the timeout is the time the whole call may take (connect, TLS
  handshake, sending, the status line, the headers and the whole body). Every blocking socket
  operation (connect, each ``send``, each ``recv``) is given only the time left, and none is
  started once it is gone, so a server that drips one byte at a time cannot stretch a call: a
  per-read timeout alone would let it run forever. A ``(connect, total)`` tuple bounds the
  connect by the first (never longer than the second);
* **a size cap while streaming** (``max_answer_bytes``): a ``Content-Length`` above it is
  refused before reading, a body without one is read in bounded pieces and abandoned once it
  passes the cap, and gzip/deflate is inflated with ``max_length`` so a decompression bomb stops
  at the cap too, as soon as it passes it. Memory per call stays near the cap;
* a body that cannot be read once the status line and headers have arrived (too large, cut
  short, past the deadline, a broken gzip) is not an exception: the response keeps its status
  and headers, an empty body, and the reason in :attr:`Answer.unreadable`, so the connector can
  tell "the ERP answered 201 with a body we cannot read" (the order is there) from "no answer";
* proxies (``http://`` proxy URLs: absolute-form for HTTP, ``CONNECT`` for HTTPS), client
  certificates and custom CA bundles (or ``verify=False``) are handled here, under the same
  bounds;
* failures raise the requests exception urllib3's adapter would: ``ConnectTimeout``,
  ``ReadTimeout``, ``ConnectionError`` (a refused connection says ``NewConnectionError`` and
  ``Connection refused``, which the connector reads as "never sent").

Redirects are never followed here (the connector decides them). What still goes to requests'
own ``HTTPAdapter`` is what this adapter cannot speak: a proxy reached over TLS or SOCKS, a URL
scheme other than http(s), a streamed body. There the body is still read in pieces under the cap
and the deadline is checked between pieces, but the connect and the headers are bounded only by
per-read timeouts (see :meth:`LeanAdapter._fallback_send`). Name resolution
(``getaddrinfo``) cannot be interrupted by any of these bounds: it takes what the system
resolver takes.
"""

from __future__ import annotations

import http.client
import io
import os
import queue
import select
import socket
import ssl
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import DEFAULT_CA_BUNDLE_PATH, BaseAdapter, HTTPAdapter
from requests.auth import _basic_auth_str
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_auth_from_url, get_encoding_from_headers, requote_uri, select_proxy

__all__ = ["MAX_ANSWER_BYTES", "Answer", "LeanAdapter", "prepare"]

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a connector's MaxAnswerBytes by default
_PIECE = 64 * 1024  # bytes read (or inflated) at a time when the length is not known
_NEVER = float("inf")  # the deadline of a call without a timeout
_monotonic = time.monotonic

# (scheme, host, port, proxy URL or "", TLS settings key)
_Key = tuple[str, str, int, str, Any]


def prepare(
    session: requests.Session,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    cookies: bool = True,
) -> requests.PreparedRequest:
    """The request ``session.request`` would prepare for the runner's calls, at a third of the
    CPU: the URL requoted and its ``params`` appended (``None`` values left out, lists
    repeated), the session's headers under ``headers``, its cookies (unless ``cookies`` is
    false), a bytes body.

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
    if cookies and len(session.cookies) and "Cookie" not in merged:
        p.prepare_cookies(session.cookies)
    else:
        # Session.send reads a jar here on any 3xx, redirects followed or not (it copies it
        # before adding to it, so one shared empty jar will do).
        p._cookies = _NO_COOKIES  # type: ignore[attr-defined]
    return p


_NO_COOKIES = RequestsCookieJar()


class Answer(requests.Response):
    """A response; ``unreadable`` says why its body could not be read (empty: it could).

    The status line and headers arrived, so the server did answer: a write answered 2xx with an
    unreadable body is still a write the ERP took.
    """

    unreadable = ""


class _Raw:
    """What ``extract_cookies_to_jar`` reads off ``Response.raw``: the http.client response."""

    def __init__(self, original: http.client.HTTPResponse) -> None:
        self._original_response = original


class _Final(http.client.HTTPResponse):
    """A response that is the server's final answer: interim ``1xx`` answers (``102
    Processing``, ``103 Early Hints``) are skipped, as ``http.client`` skips only ``100``.

    Taken as final, an interim answer would end the call with no body while the real answer
    is still on its way, and the connection, back in the pool, would hand that answer to the
    next call: a duplicate check reading another order's write. A ``101`` (never asked for)
    is not an answer this client can read.
    """

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status == 101:
                raise http.client.HTTPException("answered 101 Switching Protocols, never asked for")
            if not 100 < status < 200:
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]  # bounded lines


class _Expired(TimeoutError):
    """The call's deadline passed before a socket operation could start."""


class _Wire(io.RawIOBase):
    """A socket's reads, each given only what is left of the call's deadline.

    ``http.client`` reads the status line, the headers and the body through
    ``sock.makefile("rb")``; handing it this object instead puts the deadline under every one
    of those reads.
    """

    def __init__(self, sock: socket.socket, conn: _Deadlined) -> None:
        super().__init__()
        self.sock, self.conn = sock, conn
        # As ``socket.makefile`` does: the connection's close() (http.client closes it at once
        # when the answer ends the connection, ``Connection: close`` or HTTP/1.0) leaves the
        # descriptor open until this reader is closed, so the body can still be read.
        sock._io_refs += 1  # type: ignore[attr-defined]

    def close(self) -> None:
        if not self.closed:
            try:
                self.sock._decref_socketios()  # type: ignore[attr-defined]
            finally:
                super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        self.sock.settimeout(self.conn.time_left())
        return self.sock.recv_into(b)

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        """What ``HTTPResponse.__init__`` calls on its "socket"."""
        return io.BufferedReader(self)


class _Deadlined(http.client.HTTPConnection):
    """An HTTP connection whose sends and reads end by ``deadline`` (a ``monotonic`` time)."""

    deadline = 0.0

    def time_left(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); _Expired when none are."""
        if self.deadline == _NEVER:
            return None
        left = self.deadline - _monotonic()
        if left <= 0:
            raise _Expired("the call's deadline passed")
        return left

    def response_class(  # type: ignore[override]  # getresponse() calls self.response_class(...)
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None
    ) -> http.client.HTTPResponse:
        return _Final(_Wire(sock, self), debuglevel, method=method)  # type: ignore[arg-type]

    def connect(self) -> None:
        """TCP (its connect timeout never past the deadline), TCP_NODELAY, and a proxy's
        ``CONNECT`` (through :meth:`send` and :class:`_Wire`)."""
        left = self.time_left()
        if left is not None and (self.timeout is None or self.timeout > left):
            self.timeout = left
        http.client.HTTPConnection.connect(self)

    def send(self, data: Any) -> None:
        """Send bytes, each ``send`` within what is left (``sendall`` on a TLS socket would give
        every piece the whole timeout again)."""
        if self.sock is None:
            self.connect()
        sock = self.sock
        if isinstance(data, str):
            data = data.encode("iso-8859-1")
        view = memoryview(data)
        while view:
            sock.settimeout(self.time_left())
            view = view[sock.send(view) :]


class _DeadlinedTLS(_Deadlined, http.client.HTTPSConnection):
    """HTTPS: the TCP connect and the TLS handshake together within the deadline."""

    def connect(self) -> None:
        _Deadlined.connect(self)
        self.sock.settimeout(self.time_left())  # the handshake is bounded by it as a whole
        server_hostname = self._tunnel_host or self.host  # type: ignore[attr-defined]
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=server_hostname
        )


class LeanAdapter(BaseAdapter):
    """HTTP(S) with keep-alive over ``http.client``, bounded in time and size; thread-safe."""

    def __init__(self, pool_maxsize: int = 10, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        super().__init__()
        self.pool_maxsize = pool_maxsize
        self.max_answer_bytes = max_answer_bytes
        self._pools: dict[_Key, queue.LifoQueue[_Deadlined]] = {}
        self._fallback = HTTPAdapter(pool_maxsize=pool_maxsize, max_retries=0)
        self._contexts: dict[Any, ssl.SSLContext] = {}

    # -------------------------------------------------------------------- TLS
    def _context(self, verify: bool | str, cert: Any) -> tuple[Any, ssl.SSLContext]:
        """The TLS context for these settings (cached) and its key. ``verify``: True (requests'
        own CA bundle, certifi's, not the system's), a CA bundle file or directory, or False."""
        key = (verify, cert if not isinstance(cert, list) else tuple(cert))
        ctx = self._contexts.get(key)
        if ctx is None:
            if verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif isinstance(verify, str) and os.path.isdir(verify):
                ctx = ssl.create_default_context(capath=verify)
            else:
                ctx = ssl.create_default_context(
                    cafile=verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
                )
            if cert:
                if isinstance(cert, tuple | list):
                    ctx.load_cert_chain(cert[0], cert[1])
                else:
                    ctx.load_cert_chain(cert)
            ctx = self._contexts.setdefault(key, ctx)
        return key, ctx

    # -------------------------------------------------------------------- pool
    def _pool(self, key: _Key) -> queue.LifoQueue[_Deadlined]:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools.setdefault(key, queue.LifoQueue(self.pool_maxsize))
        return pool

    def _connection(self, key: _Key, ctx: ssl.SSLContext | None) -> tuple[_Deadlined, bool]:
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
        return self._new_connection(key, ctx), False

    @staticmethod
    def _new_connection(key: _Key, ctx: ssl.SSLContext | None) -> _Deadlined:
        scheme, host, port, proxy, _ = key
        if proxy:  # connect to the proxy; HTTPS tunnels through it with CONNECT
            p = urlsplit(proxy)
            where, at = p.hostname or "", p.port or 80
        else:
            where, at = host, port
        if scheme != "https":
            return _Deadlined(where, at)
        tls = _DeadlinedTLS(where, at, context=ctx)
        if proxy:
            tls.set_tunnel(host, port, headers=_proxy_headers(proxy))
        return tls

    def _release(self, key: _Key, conn: _Deadlined) -> None:
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
        """Send one request within its deadline (``timeout``: seconds for the whole call, or
        ``(connect, total)``; None: no deadline). See the module docstring."""
        started = _monotonic()
        url = request.url or ""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        total, connect = _timeouts(timeout)
        proxy = select_proxy(url, dict(proxies)) if proxies else None
        if proxy and "://" not in proxy:
            proxy = "http://" + proxy
        if (
            stream
            or scheme not in ("http", "https")
            or (proxy and not proxy.lower().startswith("http://"))
            or not isinstance(request.body, bytes | str | None)
        ):
            return self._fallback_send(request, timeout, verify, cert, proxies, started)
        tls_key, ctx = self._context(verify, cert) if scheme == "https" else (None, None)
        host = parts.hostname or ""
        key = (scheme, host, parts.port or (443 if scheme == "https" else 80), proxy or "", tls_key)
        if proxy and scheme == "http":
            target = url  # absolute-form, for the proxy
        else:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
        conn, reused = self._connection(key, ctx)
        conn.deadline = started + total
        if conn.sock is None:
            conn.timeout = None if connect == _NEVER else connect
        headers = request.headers
        try:
            if conn.sock is None:
                conn.connect()  # sets TCP_NODELAY
            body = request.body
            conn.putrequest(request.method or "GET", target, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if proxy and scheme == "http":
                for k, v in _proxy_headers(proxy).items():
                    conn.putheader(k, v)
            if body is not None and "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body.encode("utf-8") if isinstance(body, str) else body)
            resp = conn.getresponse()
        except BaseException as exc:
            connected = reused or conn.sock is not None  # before close() forgets the socket
            conn.close()
            raise _mapped(exc, request, connected=connected, total=total) from exc
        content, unreadable = self._body(resp, total)
        if unreadable or resp.will_close or not resp.isclosed():
            resp.close()  # its reader holds the socket open (see _Wire)
            conn.close()  # a body not read to its end leaves the connection unusable
        else:
            self._release(key, conn)
        r = self._response(request, resp, content, url)
        r.unreadable = unreadable
        return r

    def _body(self, resp: http.client.HTTPResponse, total: float) -> tuple[bytes, str]:
        """The body read under the cap and the deadline, inflated under the cap; or b"" and
        why it could not be read."""
        cap = self.max_answer_bytes
        coding = (resp.getheader("content-encoding") or "").strip().lower()
        length = resp.length
        try:
            if length is not None and length > cap:
                return b"", f"a Content-Length of {length:,} bytes, {_more(cap)}"
            if length is not None:  # the common case: one read of a known length
                content = resp.read()
                if coding not in _CODINGS or not content:
                    return content, ""
                return _inflate((content,), coding, cap)
            # chunked, or until the server closes: pieces, each inflated as it arrives
            inflater = _Inflater(coding, cap) if coding in _CODINGS else None
            pieces: list[bytes] = []
            size = 0
            while True:
                piece = resp.read1(_PIECE)
                if not piece:
                    break
                size += len(piece)
                if size > cap:
                    return b"", f"a body of {_more(cap)}"
                if inflater is None:
                    pieces.append(piece)
                elif why := inflater.feed(piece):
                    return b"", why
        except TimeoutError:  # a read past the deadline, or none started after it
            return b"", f"a body that did not arrive in full within {total:g}s"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return b"", f"a body cut short ({type(exc).__name__})"
        if inflater is not None:
            return inflater.result()
        return b"".join(pieces), ""

    def _response(
        self,
        request: requests.PreparedRequest,
        resp: http.client.HTTPResponse,
        content: bytes,
        url: str,
    ) -> Answer:
        r = Answer()
        r.status_code = resp.status
        r.headers = CaseInsensitiveDict(resp.getheaders())
        r.encoding = get_encoding_from_headers(r.headers)
        r.reason = resp.reason
        r.url = url
        r.request = request
        r.connection = self  # type: ignore[assignment]  # what requests reads: close()
        r._content = content
        r._content_consumed = True  # type: ignore[attr-defined]
        if "set-cookie" in r.headers:
            r.raw = _Raw(resp)
            extract_cookies_to_jar(r.cookies, request, r.raw)  # type: ignore[no-untyped-call]
        return r

    def _fallback_send(
        self,
        request: requests.PreparedRequest,
        timeout: Any,
        verify: bool | str,
        cert: Any,
        proxies: Mapping[str, str] | None,
        started: float,
    ) -> requests.Response:
        """What this adapter does not speak, through urllib3: a proxy over TLS or SOCKS, a
        scheme other than http(s), a body that is not bytes.

        The body is read in pieces (``read1``) under the cap, and the deadline is checked
        between pieces, so a drip ends at most one read timeout after it. The connect, the
        headers and each single read are bounded by urllib3's per-read timeout (the whole
        timeout), not by the time left.
        """
        total, connect = _timeouts(timeout)
        bounds = None if total == _NEVER else (connect, total)
        resp = self._fallback.send(request, True, bounds, verify, cert, dict(proxies or {}))
        raw = resp.raw
        cap = self.max_answer_bytes
        pieces: list[bytes] = []
        size, unreadable = 0, ""
        try:
            length = int(resp.headers.get("Content-Length") or -1)
            if length > cap:
                unreadable = f"a Content-Length of {length:,} bytes, {_more(cap)}"
            while not unreadable:
                piece = raw.read1(_PIECE, decode_content=False)
                if not piece:
                    break
                size += len(piece)
                if size > cap:
                    unreadable = f"a body of {_more(cap)}"
                elif _monotonic() - started > total:
                    unreadable = f"a body that did not arrive in full within {total:g}s"
                pieces.append(piece)
        except Exception as exc:  # noqa: BLE001 - urllib3's read errors: the body is unreadable
            unreadable = f"a body cut short ({type(exc).__name__})"
        resp.close()
        content = b""
        coding = (resp.headers.get("Content-Encoding") or "").strip().lower()
        if not unreadable:
            if coding in _CODINGS and size:
                content, unreadable = _inflate(pieces, coding, cap)
            else:
                content = b"".join(pieces)
        r = Answer()
        r.__dict__.update(resp.__dict__)
        r._content, r.unreadable = content, unreadable
        r._content_consumed = True  # type: ignore[attr-defined]
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


_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})


def _more(cap: int) -> str:
    return f"more than the {cap:,} bytes an answer may have"


def _timeouts(timeout: Any) -> tuple[float, float]:
    """(total, connect) from requests' ``timeout``: seconds for the whole call, or a
    ``(connect, total)`` tuple (the connect never longer than the total); None: unbounded."""
    if isinstance(timeout, tuple):
        connect, total = timeout
    else:
        connect = total = timeout
    if total is None:
        total = _NEVER if connect is None else float(connect)
    total = float(total)
    connect = total if connect is None else min(float(connect), total)
    return total, connect


class _Inflater:
    """gzip or deflate (zlib-wrapped or raw) inflated piece by piece, never past ``cap`` bytes
    of output (``decompress`` with ``max_length``, 64 KiB at a time)."""

    def __init__(self, coding: str, cap: int) -> None:
        self.coding, self.cap = coding, cap
        self.out: list[bytes] = []
        self.size = 0
        self.d: Any = None

    def feed(self, piece: bytes) -> str:
        """Inflate ``piece``; why the body cannot be read, or ""."""
        try:
            if self.d is None:
                if self.coding != "deflate":
                    wbits = 16 + zlib.MAX_WBITS
                elif _zlib_header(piece):
                    wbits = zlib.MAX_WBITS  # zlib-wrapped, as the standard says
                else:
                    wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send
                self.d = zlib.decompressobj(wbits)
            d, data = self.d, piece
            while data and not d.eof:
                chunk = d.decompress(data, min(_PIECE, self.cap - self.size + 1))
                self.size += len(chunk)
                if self.size > self.cap:
                    return f"a {self.coding} body that inflates to {_more(self.cap)}"
                self.out.append(chunk)
                data = d.unconsumed_tail
        except zlib.error:
            return f"a body that says {self.coding} but is not"
        return ""

    def result(self) -> tuple[bytes, str]:
        """The inflated body, or b"" and why it cannot be read."""
        if self.d is not None:
            try:
                rest = self.d.flush()
            except zlib.error:
                return b"", f"a body that says {self.coding} but is not"
            self.size += len(rest)
            if self.size > self.cap:
                return b"", f"a {self.coding} body that inflates to {_more(self.cap)}"
            self.out.append(rest)
        return b"".join(self.out), ""


def _inflate(pieces: Iterable[bytes], coding: str, cap: int) -> tuple[bytes, str]:
    """``pieces`` of a gzip or deflate body inflated under ``cap``."""
    inflater = _Inflater(coding, cap)
    for piece in pieces:
        why = inflater.feed(piece)
        if why:
            return b"", why
    return inflater.result()


def _zlib_header(data: bytes) -> bool:
    """True when ``data`` starts with a zlib header (RFC 1950): deflate as the standard says."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _proxy_headers(proxy: str) -> dict[str, str]:
    """``Proxy-Authorization`` for a proxy URL with credentials."""
    username, password = get_auth_from_url(proxy)
    return {"Proxy-Authorization": _basic_auth_str(username, password)} if username else {}


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection was closed by the server (readable means EOF or junk)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _mapped(
    exc: BaseException, request: requests.PreparedRequest, *, connected: bool, total: float
) -> BaseException:
    """The requests exception for a failure of the wire."""
    if not isinstance(exc, OSError | http.client.HTTPException):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        if not connected:
            return requests.ConnectTimeout(
                f"connect timed out: no connection within {total:g}s", request=request
            )
        return requests.ReadTimeout(f"no complete answer within {total:g}s", request=request)
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
    if isinstance(exc, http.client.HTTPException):  # a status line or headers past reading
        return requests.ConnectionError(
            f"Connection aborted: an answer that is not HTTP it can read: {_not_http(exc)}",
            request=request,
        )
    return requests.ConnectionError(f"Connection aborted: {type(exc).__name__} ({exc})",
                                    request=request)  # fmt: skip


def _not_http(exc: http.client.HTTPException) -> str:
    """What was wrong with an answer's status line or headers, in a few words."""
    if isinstance(exc, http.client.LineTooLong):
        return f"a status or header line longer than {http.client._MAXLINE:,} bytes"  # type: ignore[attr-defined]
    if isinstance(exc, http.client.BadStatusLine | http.client.UnknownProtocol):
        return "no HTTP status line"
    text = str(exc)
    if "more than 100 headers" in text:
        return "more than 100 header lines"
    return text if type(exc) is http.client.HTTPException else type(exc).__name__

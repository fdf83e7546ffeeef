"""The daemon's HTTP server under hostile clients, over real sockets.

The first half runs ``WebServer`` in this process with a small WSGI app (fast, and it can see
threads and logs); the second half runs ``integrator daemon`` as users do, with short bounds
(``--http-timeout 0.5``), so the app behind the server is the real one.

Every client here misbehaves on purpose: it drips a header byte at a time, drips a body,
drips blank lines, lies about Content-Length, sends too much, or connects and says nothing.
The promise under test: no such client holds a connection past ``request_seconds`` (or an
idle one past ``idle_seconds``), none of them keeps /healthz from answering for long, none
produces a traceback, and stopping leaves no thread and no open port.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

import pytest
import requests
import structlog
from support import Project, free_port, fresh_python, wait_for
from support.daemon import daemon
from support.omnium import FLOW

from integrator.sandbox import SANDBOX_ENV
from integrator.scheduler.httpserver import WebServer
from integrator.scheduler.web import App, HttpLimits
from integrator.state import Store

DEADLINE = 0.5  # request_seconds and idle_seconds of every server here
SLACK = 1.5  # scheduling noise on a loaded machine; the bound stays far below "forever"
LIMITS = HttpLimits(request_seconds=DEADLINE, idle_seconds=DEADLINE, connections=4)
HEADER = "X-Omnium-Secret"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = json.dumps({"path": environ["PATH_INFO"], "body": len(body)}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]


@contextmanager
def serving(app: Any = hello, limits: HttpLimits = LIMITS) -> Iterator[WebServer]:
    server = WebServer(app, "127.0.0.1", 0, limits)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` at once and read until the server closes (or 10 s)."""
    with connect(port) as s:
        s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    with suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


class Drippers:
    """``n`` hostile clients: each sends ``prefix`` then one byte of ``drip`` to every socket
    every ``interval`` seconds (the attack's own pace, not a wait), and notes what the server
    answered and when it closed the connection."""

    def __init__(
        self, port: int, n: int, prefix: bytes, drip: bytes = b"a", interval: float = 0.05
    ) -> None:
        self.socks = [connect(port) for _ in range(n)]
        for s in self.socks:
            s.sendall(prefix)
        self.started = time.monotonic()
        self.drip, self.interval = drip, interval
        self.answers: dict[socket.socket, bytes] = {s: b"" for s in self.socks}
        self.closed_at: dict[socket.socket, float] = {}
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            for s in self.socks:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            i = 0
            while not self._stop.is_set() and len(self.closed_at) < len(self.socks):
                byte = self.drip[i % len(self.drip) : i % len(self.drip) + 1]
                i += 1
                for s in self.socks:
                    if s not in self.closed_at:
                        with suppress(BlockingIOError, OSError):
                            self.sent += s.send(byte)
                for key, _ in sel.select(self.interval):
                    s = key.fileobj  # type: ignore[assignment]
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        self.answers[s] += chunk
                    else:
                        self.closed_at[s] = time.monotonic()
                        sel.unregister(s)

    def all_closed(self, timeout: float) -> float:
        """Seconds from the first byte until the server had closed every connection."""
        wait_for(lambda: len(self.closed_at) == len(self.socks), timeout, "every dripper closed")
        return max(self.closed_at.values()) - self.started

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()


@contextmanager
def drippers(port: int, n: int, prefix: bytes, drip: bytes = b"a") -> Iterator[Drippers]:
    d = Drippers(port, n, prefix, drip)
    try:
        yield d
    finally:
        d.close()


# ------------------------------------------------------------------- the server alone


@pytest.mark.parametrize(
    ("prefix", "drip"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),  # headers never end
        (b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"a"),  # slow body
        (b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\na\r\n"),
        (b"", b"\r\n"),  # blank lines: empty requests that must not restart the clock
    ],
    ids=["headers", "body", "chunked-body", "blank-lines"],
)
def test_a_dripping_request_is_answered_408_and_closed_at_the_deadline(
    prefix: bytes, drip: bytes
) -> None:
    """The client is never idle (a byte every 50 ms), so an inactivity timeout never fires;
    the whole request has ``DEADLINE`` seconds to arrive."""
    with serving() as server, drippers(server.port, 1, prefix, drip) as d:
        took = d.all_closed(DEADLINE + SLACK + 5)
        assert DEADLINE * 0.9 <= took <= DEADLINE + SLACK, took
        assert d.sent > 5  # it kept dripping until the end
        (answer,) = d.answers.values()
        if drip == b"\r\n":  # blank lines are not a request: closed without an answer
            assert answer == b""
        else:
            assert status(answer) == 408 and b"did not arrive whole within 0.5 s" in answer


def test_a_request_that_drips_but_arrives_in_time_is_served() -> None:
    """The deadline is for the whole request, and only a slow one loses it."""
    with serving(limits=HttpLimits(request_seconds=5, idle_seconds=5)) as server:
        with connect(server.port) as s:
            for byte in b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
                s.send(bytes([byte]))
            answer = read_all(s)
        assert status(answer) == 200 and b'"/fine"' in answer


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (b"Content-Length: abc\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 1e3\r\n", 400),
        (b"Content-Length: +5\r\n", 400),
        (b"Content-Length: 5\r\nContent-Length: 7\r\n", 400),  # two values
        (b"Content-Length: 5, 7\r\n", 400),
        (b"Content-Length: 99999999999999999999999\r\n", 413),
        (b"Content-Length: 1048577\r\n", 413),  # the limit plus one
        (b"Transfer-Encoding: gzip\r\n", 501),
        (b"X-Big: " + b"a" * 70_000 + b"\r\n", 431),
        (b"Bad Header\r\n", 400),
    ],
    ids=[
        "not-a-number",
        "negative",
        "exponent",
        "plus-sign",
        "two-headers",
        "two-values",
        "huge",
        "over-limit",
        "unknown-encoding",
        "oversized-headers",
        "malformed-header",
    ],
)
def test_a_bad_content_length_or_header_is_a_4xx_and_the_app_never_runs(
    headers: bytes, code: int, capfd: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        return hello(environ, start_response)

    with serving(app) as server:
        answer = exchange(server.port, b"POST /e HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n12345")
    assert status(answer) == code, answer[:200]
    assert b"Connection: close" in answer and b"Traceback" not in answer
    assert calls == []
    assert capfd.readouterr().err == ""


def test_a_chunked_body_over_the_limit_is_413() -> None:
    limits = HttpLimits(request_seconds=5, idle_seconds=5, max_body_bytes=1000)
    chunk = b"%x\r\n%s\r\n" % (600, b"a" * 600)
    with serving(limits=limits) as server:
        answer = exchange(
            server.port,
            b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3,
        )
        ok = exchange(
            server.port,
            b"POST /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"
            + b"a" * 1000,
        )
    assert status(answer) == 413
    assert status(ok) == 200 and b'"body": 1000' in ok  # exactly the limit is fine


def test_idle_connections_are_closed() -> None:
    """A keep-alive connection after its answer, and a client that never says a word."""
    with serving() as server, connect(server.port) as kept, connect(server.port) as mute:
        start = time.monotonic()
        kept.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(kept)  # returns when the server closes the idle connection
        took = time.monotonic() - start
        assert status(answer) == 200 and answer.count(b"HTTP/1.1") == 1
        assert DEADLINE * 0.9 <= took <= DEADLINE + SLACK, took
        assert read_all(mute) == b""
        assert time.monotonic() - start <= DEADLINE + SLACK


def test_keep_alive_serves_requests_in_turn_within_the_idle_time() -> None:
    limits = HttpLimits(request_seconds=5, idle_seconds=5)
    with serving(limits=limits) as server, connect(server.port) as s:
        for path in (b"/a", b"/b"):
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"}" not in head:
                head += s.recv(4096)
            assert status(head) == 200 and path in head


def test_drippers_beyond_the_connection_limit_cannot_keep_health_down() -> None:
    """Five times the limit of dripping clients, all connected before the health check: at
    the limit the slowest is shed (503) to let the next one in, so the check queued behind
    all of them is answered within one deadline, and every dripper is gone soon after."""
    limit = LIMITS.connections
    with serving() as server:
        prefix = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        with drippers(server.port, 5 * limit, prefix) as d:
            start = time.monotonic()
            health = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30)
            took = time.monotonic() - start
            assert health.status_code == 200
            assert took <= DEADLINE + SLACK, took
            d.all_closed(2 * DEADLINE + SLACK)
            codes = sorted(status(a) for a in d.answers.values())
            assert set(codes) <= {408, 503} and 503 in codes, codes


def test_the_limit_of_drippers_leaves_health_answered_within_one_deadline() -> None:
    limit = LIMITS.connections
    with serving() as server:
        prefix = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        with drippers(server.port, limit, prefix):
            start = time.monotonic()
            health = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30)
            assert health.status_code == 200
            assert time.monotonic() - start <= DEADLINE + SLACK


def test_at_the_limit_the_longest_idle_connection_makes_room_without_a_word() -> None:
    """Idle connections are closed after 30 s: only shedding can let the new client in
    sooner, once the idle ones have been idle for half a second. The one idle
    longest is closed silently (an answer nobody asked for would be read as the answer to its
    next request); the others are kept."""
    limits = HttpLimits(request_seconds=4, idle_seconds=30, connections=4)
    with serving(limits=limits) as server:
        kept = [connect(server.port) for _ in range(4)]
        for s in kept:
            s.sendall(b"GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"}" not in answer:
                answer += s.recv(4096)
            s.settimeout(0.05)
        start = time.monotonic()
        health = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
        took = time.monotonic() - start
        assert health.status_code == 200 and 0.25 <= took <= 0.5 + SLACK, took

        def ended(s: socket.socket) -> bool:
            try:
                return s.recv(100) == b""
            except TimeoutError:
                return False

        assert [ended(s) for s in kept] == [True, False, False, False]  # the first, silently
        for s in kept:
            s.close()


def http_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("http")]


def refused(port: int) -> bool:
    try:
        connect(port).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stop_closes_the_port_finishes_the_request_in_hand_and_leaves_no_thread() -> None:
    entered, release = threading.Event(), threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            release.wait(10)
        return hello(environ, start_response)

    assert http_threads() == []
    server = WebServer(app, "127.0.0.1", 0, HttpLimits(request_seconds=30, idle_seconds=30))
    server.start()
    port = server.port
    assert sorted(http_threads()) == ["http", *(f"http-worker-{i}" for i in range(4))]
    with connect(port) as busy, drippers(port, 3, b"GET / HTTP/1.1\r\nX: ") as d:
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.wait(5)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        wait_for(lambda: refused(port), 5, "the port closed")  # at once, the request in hand
        release.set()
        stopper.join(10)
        assert not stopper.is_alive() and http_threads() == []
        assert status(read_all(busy)) == 200  # its answer went out before the close
        d.all_closed(5)  # the dripping clients' connections were closed too
    server.stop()  # twice is harmless


def test_a_failing_handler_is_a_500_and_a_log_line_never_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    class Broken:
        metrics = None

        def healthy(self) -> tuple[bool, dict[str, Any]]:
            raise RuntimeError("the store fell over")

    app = App(Broken(), LIMITS)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs, serving(app) as server:
        answer = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        wrong = requests.post(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        missing = requests.get(f"http://127.0.0.1:{server.port}/nope", timeout=5)
    assert answer.status_code == 500 and answer.json() == {
        "detail": "internal error; see the daemon's log"
    }
    assert "Traceback" not in answer.text and "fell over" not in answer.text
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, HEAD"
    assert missing.status_code == 404
    failed = [e for e in logs if e["event"] == "http_handler_failed"]
    assert failed and failed[0]["error"] == "RuntimeError: the store fell over"
    assert capfd.readouterr().err == ""


def test_logs_go_through_structlog(capfd: pytest.CaptureFixture[str]) -> None:
    """waitress's own warning (an app that promises more bytes than it sends) arrives as an
    http_server event; the server's drops are summed up in one warning, not a line each."""

    def short(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"ab"]

    with structlog.testing.capture_logs() as logs, serving(short) as server:
        with pytest.raises(requests.RequestException, match="IncompleteRead"):
            requests.get(f"http://127.0.0.1:{server.port}/", timeout=5)
        with drippers(server.port, 3 * LIMITS.connections, b"GET / HTTP/1.1\r\nX: ") as d:
            d.all_closed(2 * DEADLINE + SLACK)
        wait_for(lambda: any(e["event"] == "http_clients_dropped" for e in logs), 5, "a report")
    messages = [e["message"] for e in logs if e["event"] == "http_server"]
    assert any("too few bytes" in m for m in messages), messages
    assert [e["event"] for e in logs if e["event"] == "http_connection_limit"] == [
        "http_connection_limit"
    ]  # once in report_every seconds, not once per client
    (report,) = [e for e in logs if e["event"] == "http_clients_dropped"]
    assert report["too_slow"] + report["shed"] >= 1 and report["log_level"] == "warning"
    assert capfd.readouterr().err == ""


def test_the_cli_does_not_import_waitress_until_the_daemon_serves() -> None:
    code = (
        "import sys\n"
        "from integrator.cli.main import cli\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(cli, ['--version'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'waitress'))\n"
    )
    out = fresh_python(code)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------ the daemon


def hostile_daemon(project: Project, connections: int = 6) -> Any:
    args = ["--http-timeout", str(DEADLINE), "--http-connections", str(connections)]
    return daemon(project, args=args)


def post_event(url: str, order_id: str, secret: str = SANDBOX_ENV["OMNIUM_EVENT_SECRET"]) -> int:
    event = {"objectId": order_id, "className": "Order", "status": "New"}
    return requests.post(url, json=event, headers={HEADER: secret}, timeout=30).status_code


def hourly(project: Project) -> None:
    project.edit_flow("every: 5m", "every: 1h", name=FLOW)


def test_the_daemon_under_hostile_clients(omnium_project: Project) -> None:
    """One daemon, every kind of bad client at once, and its health stays answered."""
    hourly(omnium_project)
    with hostile_daemon(omnium_project) as d:
        port = d.port
        events = f"/events/{FLOW}".encode()
        bad_lengths = [b"abc", b"-1", b"5, 7", b"99999999999"]
        answers = [
            exchange(
                port,
                b"POST "
                + events
                + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + cl
                + b"\r\n\r\n{}",
            )
            for cl in bad_lengths
        ]
        assert [status(a) for a in answers] == [400, 400, 400, 413]
        big = requests.post(d.url(events.decode()), data=b"x" * (1024 * 1024 + 1), timeout=10)
        assert big.status_code == 413
        huge_header = requests.get(d.url("/healthz"), headers={"X-Big": "a" * 70_000}, timeout=10)
        assert huge_header.status_code == 431
        assert requests.get(d.url("/nope"), timeout=5).status_code == 404
        assert requests.get(d.url(events.decode()), timeout=5).status_code == 405
        head = requests.head(d.url("/healthz"), timeout=5)
        assert head.status_code == 200 and head.content == b""
        with drippers(port, 30, b"POST " + events + b" HTTP/1.1\r\nHost: x\r\nX-Slow: ") as drip:
            start = time.monotonic()
            health = requests.get(d.url("/healthz"), timeout=30)
            assert health.status_code == 200 and health.json()["ok"] is True
            assert time.monotonic() - start <= DEADLINE + SLACK  # within one deadline
            drip.all_closed(3 * DEADLINE + SLACK)
        with drippers(port, 2, b"POST " + events + b" HTTP/1.1\r\nContent-Length: 50\r\n\r\n"):
            pass  # closed by us mid-body: nothing to log, nothing queued
        wait_for(lambda: d.named("http_clients_dropped"), 5, "the drops reported")
        assert not d.named("event_accepted")
        assert d.stop() == 0
        with pytest.raises(ConnectionRefusedError):
            connect(port)
    # every line on stderr is a JSON event; waitress printed nothing of its own
    assert all(line.startswith("{") for line in d.raw), [x for x in d.raw if x[:1] != "{"]
    assert not any("Traceback" in line for line in d.raw)


def test_a_burst_of_200_concurrent_events_is_accepted_and_queued(
    omnium_project: Project,
) -> None:
    """Each 202 is a committed row in pending_events. The flow is held by another process, so
    the queue stays as the burst left it."""
    hourly(omnium_project)
    store = Store(f"sqlite:///{omnium_project.root / 'state' / 'omnium.db'}")
    try:
        with store.locks.hold(FLOW), daemon(omnium_project) as d:  # the default bounds
            url = d.url(f"/events/{FLOW}")
            barrier = threading.Barrier(200)

            def one(i: int) -> int:
                barrier.wait(30)
                return post_event(url, f"BURST-{i:04d}")

            with ThreadPoolExecutor(200) as pool:
                codes = list(pool.map(one, range(200)))
            assert codes == [202] * 200
            assert store.pending.waiting(FLOW) == 200
            wait_for(lambda: len(d.named("event_accepted")) == 200, 10, "200 events logged")
            assert d.stop() == 0
    finally:
        store.close()
    # APScheduler's notes about the busy flow are not written beside the JSON lines
    assert all(line.startswith("{") for line in d.raw), [x for x in d.raw if x[:1] != "{"]


def test_binding_beyond_loopback_needs_behind_proxy(omnium_project: Project) -> None:
    hourly(omnium_project)
    port = free_port()
    r = omnium_project.run("daemon", "--http", f"0.0.0.0:{port}", timeout=60)
    assert r.code == 2, r.out + r.err
    assert "--behind-proxy" in r.err and "TLS" in r.err and "deploy/Caddyfile" in r.err
    assert "Traceback" not in r.err
    with daemon(omnium_project, args=["--behind-proxy", "--http", f"0.0.0.0:{port}"]) as d:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert d.stop() == 0


def test_loopback_names_are_allowed(omnium_project: Project) -> None:
    hourly(omnium_project)
    port = free_port()
    with daemon(omnium_project, args=["--http", f"localhost:{port}"]) as d:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert d.stop() == 0

"""The sandbox's JSON-RPC (Odoo-like) and SOAP ERPs, over real HTTP: their logins, their
models and operations, their errors and Faults, hostile requests, the faults tests inject, and
`integrator sandbox` starting them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import pytest
import requests
from defusedxml.ElementTree import fromstring
from support import Project, make_project
from support.newcomer import clean_env, cli, sandbox_cmd

from integrator.sandbox import SANDBOX_ENV, JsonRpcErpSandbox, SoapErpSandbox, running_sandbox
from integrator.sandbox.erp_common import PBKDF2_ITERATIONS, Password
from integrator.sandbox.soap_erp import NS, SOAP11, SOAP12, soap_action

DB, LOGIN, PASSWORD = "sandbox", "integrator", "rpc-Secret-91x"
SOAP_USER, SOAP_PASSWORD = "integrator", "soap-Secret-37q"


class Clock:
    """A clock the tests move (session expiry without waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rpc(clock: Clock) -> Iterator[JsonRpcErpSandbox]:
    server = JsonRpcErpSandbox(
        db=DB, login=LOGIN, password=PASSWORD, session_ttl=60, clock=clock
    ).start()
    yield server
    server.stop()


@pytest.fixture
def soap(clock: Clock) -> Iterator[SoapErpSandbox]:
    server = SoapErpSandbox(
        user=SOAP_USER, password=SOAP_PASSWORD, session_ttl=60, clock=clock
    ).start()
    yield server
    server.stop()


def set_faults(url: str, *rules: dict[str, Any]) -> None:
    resp = requests.post(f"{url}/_sandbox/faults", json={"rules": list(rules)}, timeout=5)
    assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------------- JSON-RPC
def envelope(service: str, method: str, *args: Any, rid: Any = 7) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "call",
        "params": {"service": service, "method": method, "args": list(args)},
        "id": rid,
    }


def post_rpc(
    server: JsonRpcErpSandbox, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One JSON-RPC call: always HTTP 200 with a JSON-RPC answer."""
    resp = requests.post(f"{server.url}/jsonrpc", json=body, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    assert answer["jsonrpc"] == "2.0"
    assert PASSWORD not in resp.text  # never echoed, whatever the call
    return answer


def rpc_call(server: JsonRpcErpSandbox, service: str, method: str, *args: Any) -> Any:
    return post_rpc(server, envelope(service, method, *args))


def kw(server: JsonRpcErpSandbox, method: str, *args: Any, password: str = PASSWORD) -> Any:
    """object.execute_kw on sale.order with uid 2."""
    return rpc_call(server, "object", "execute_kw", DB, 2, password, "sale.order", method, *args)


def session(server: JsonRpcErpSandbox) -> dict[str, str]:
    """common.session_login → the Authorization header built from [uid, key]."""
    answer = rpc_call(server, "common", "session_login", DB, LOGIN, PASSWORD)
    uid, key = answer["result"]
    assert isinstance(uid, int) and isinstance(key, str) and len(key) >= 24
    token = base64.b64encode(f"{LOGIN}:{uid}:{key}".encode()).decode()
    return {"Authorization": f"Session {token}"}


def execute(server: JsonRpcErpSandbox, headers: dict[str, str], method: str, *args: Any) -> Any:
    body = envelope("object", "execute", "sale.order", method, *args)
    return post_rpc(server, body, headers)


def error_of(answer: dict[str, Any]) -> tuple[int, str, str]:
    """(code, data.name, data.message) of an error answer."""
    assert "result" not in answer, answer
    err = answer["error"]
    return err["code"], err["data"].get("name", ""), err["data"]["message"]


def an_order(ref: str, *codes: str) -> dict[str, Any]:
    lines = [
        {"product_code": c, "qty": 1, "price": "249.90", "external_id": str(i + 1)}
        for i, c in enumerate(codes or ("TSH-001",))
    ]
    return {"client_order_ref": ref, "partner_email": "a@example.com", "order_line": lines}


def test_odoo_login_answers_the_uid_or_false_and_a_wrong_db_is_an_error(
    rpc: JsonRpcErpSandbox,
) -> None:
    assert rpc_call(rpc, "common", "login", DB, LOGIN, PASSWORD) == {
        "jsonrpc": "2.0", "id": 7, "result": 2,
    }  # fmt: skip
    assert rpc_call(rpc, "common", "login", DB, LOGIN, "wrong")["result"] is False
    assert rpc_call(rpc, "common", "login", DB, "someone", PASSWORD)["result"] is False
    answer = rpc_call(rpc, "common", "login", "nodb", LOGIN, PASSWORD)
    assert answer["error"]["code"] == 200 and answer["error"]["message"] == "Odoo Server Error"
    _, name, message = error_of(answer)
    assert name == "psycopg2.OperationalError" and 'database "nodb" does not exist' in message
    stats = rpc.stats()
    assert stats["logins"] == {"login": 1, "session_login": 0} and stats["refused_logins"] == 2


def test_execute_kw_checks_the_password_on_every_call_with_pbkdf2(
    rpc: JsonRpcErpSandbox,
) -> None:
    before = rpc.stats()["password_checks"]
    assert kw(rpc, "create", [an_order("K-1")])["result"] == 1
    for _ in range(3):
        assert kw(rpc, "search", [[["client_order_ref", "=", "K-1"]]])["result"] == [1]
    assert rpc.stats()["password_checks"] == before + 4
    for args in ((DB, 2, "wrong"), (DB, 3, PASSWORD), (DB, True, PASSWORD), (DB, "2", PASSWORD)):
        answer = rpc_call(rpc, "object", "execute_kw", *args, "sale.order", "create",
                          [an_order("K-2")])  # fmt: skip
        assert error_of(answer)[1:] == ("odoo.exceptions.AccessDenied", "Access Denied"), args
    assert rpc.stats()["orders"] == 1  # refused calls created nothing
    answer = rpc_call(rpc, "object", "execute_kw", "nodb", 2, PASSWORD, "sale.order", "search",
                      [[]])  # fmt: skip
    assert error_of(answer)[1] == "psycopg2.OperationalError"


def test_a_password_check_costs_tens_of_milliseconds_of_cpu() -> None:
    """Odoo's PBKDF2: what makes a login on every call expensive (the README's figure)."""
    password = Password("x")
    password.check("x")  # the stored hash is derived at the first check
    took = []
    for given in ("x", "y", 12):
        t = time.thread_time()
        password.check(given)
        took.append(time.thread_time() - t)
    print(f"PBKDF2-SHA512 x{PBKDF2_ITERATIONS}: {[f'{s * 1000:.1f} ms' for s in took]} of CPU")
    assert min(took) > 0.02, took  # about 50 ms on the development machine
    assert password.checks == 4


def test_a_session_login_then_execute_with_the_session_header(rpc: JsonRpcErpSandbox) -> None:
    headers = session(rpc)
    checks = rpc.stats()["password_checks"]
    assert execute(rpc, headers, "create", [an_order("S-1")])["result"] == 1
    found = execute(
        rpc,
        headers,
        "search_read",
        [[["client_order_ref", "=", "S-1"]]],
        {"fields": ["name", "client_order_ref", "amount_total", "order_line"]},
    )
    assert found["result"] == [
        {
            "id": 1, "name": "S00001", "client_order_ref": "S-1", "amount_total": 249.9,
            "order_line": [{"id": 1, "product_code": "TSH-001", "external_id": "1",
                            "qty": 1.0, "price": 249.9}],
        }
    ]  # fmt: skip
    stats = rpc.stats()
    assert stats["password_checks"] == checks  # a session call costs no password check
    assert stats["session_checks"] == 2 and stats["sessions_rejected"] == 0
    assert stats["logins"] == {"login": 0, "session_login": 1}
    assert stats["methods"] == {"sale.order": {"create": 1, "search_read": 1}}
    answer = rpc_call(rpc, "common", "session_login", DB, LOGIN, "wrong")
    assert error_of(answer)[1] == "odoo.exceptions.AccessDenied"


def session_expired(answer: dict[str, Any]) -> bool:
    err = answer.get("error") or {}
    return (
        err.get("code") == 100
        and err.get("message") == "Odoo Session Expired"
        and err["data"]["name"] == "odoo.http.SessionExpiredException"
        and err["data"]["message"] == "Session expired"
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_dead_or_forged_session_is_session_expired(rpc: JsonRpcErpSandbox, clock: Clock) -> None:
    good = session(rpc)
    token = base64.b64decode(good["Authorization"].split()[1]).decode()
    login, uid, key = token.rsplit(":", 2)
    forged = [
        {},
        {"Authorization": f"Basic {b64(f'{LOGIN}:{PASSWORD}')}"},
        {"Authorization": "Session not-base64!"},
        {"Authorization": f"Session {b64(key)}"},  # no login, no uid
        {"Authorization": f"Session {b64(f'{login}:{uid}:unknown-key-000000000000000')}"},
        {"Authorization": f"Session {b64(f'someone:{uid}:{key}')}"},  # another's key
        {"Authorization": f"Session {b64(f'{login}:3:{key}')}"},
        {"Authorization": f"Session {b64(f'{login}:{uid}:')}"},
        {"Authorization": f"Bearer {key}"},
    ]
    for headers in forged:
        assert session_expired(execute(rpc, headers, "search", [[]])), headers
    assert execute(rpc, good, "search", [[]])["result"] == []
    clock.now += 61  # the session's lifetime is over
    assert session_expired(execute(rpc, good, "search", [[]]))
    assert execute(rpc, session(rpc), "search", [[]])["result"] == []
    stats = rpc.stats()
    assert stats["sessions_rejected"] == len(forged) + 1 and stats["methods"] == {
        "sale.order": {"search": 2}
    }


def test_sale_order_search_and_create_shapes(rpc: JsonRpcErpSandbox) -> None:
    headers = session(rpc)
    order = an_order("R-1", "TSH-001", "PNT-014")
    order["order_line"][1] = [0, 0, {"product_code": "PNT-014", "qty": 2, "price": 899,
                                     "external_id": 77}]  # Odoo's create command  # fmt: skip
    assert execute(rpc, headers, "create", [order])["result"] == 1
    assert execute(rpc, headers, "create", [[an_order("R-2"), an_order("R-3")]])["result"] == [
        2, 3,
    ]  # fmt: skip
    rows = execute(rpc, headers, "search_read", [[["client_order_ref", "=", "R-1"]]])["result"]
    assert rows[0]["amount_total"] == 2047.9  # computed: 249.90 + 2 x 899
    assert [line["external_id"] for line in rows[0]["order_line"]] == ["1", 77]
    assert set(rows[0]) == {"id", "name", "client_order_ref", "partner_email", "amount_total",
                            "order_line"}  # fmt: skip
    domain = [["client_order_ref", "in", ["R-2", "R-3", "R-9"]]]
    assert execute(rpc, headers, "search", [domain])["result"] == [2, 3]
    assert execute(rpc, headers, "search", [domain], {"limit": 1, "offset": 1})["result"] == [3]
    assert (
        execute(rpc, headers, "search_count", [[["client_order_ref", "!=", "R-1"]]])["result"] == 2
    )
    assert execute(rpc, headers, "search_read", [[["name", "=", "S00003"]], ["id"]])["result"] == [
        {"id": 3}
    ]
    assert (
        execute(rpc, headers, "search_read", [[["client_order_ref", "=", "nope"]]])["result"] == []
    )


def test_an_unknown_product_is_a_user_error_and_nothing_is_created(
    rpc: JsonRpcErpSandbox,
) -> None:
    headers = session(rpc)
    answer = execute(rpc, headers, "create", [an_order("U-1", "TSH-001", "NOPE-1")])
    assert error_of(answer) == (200, "odoo.exceptions.UserError", "Unknown product: NOPE-1")
    # one bad record in a batch: none of it
    answer = execute(rpc, headers, "create", [[an_order("U-2"), an_order("U-3", "NOPE-2")]])
    assert error_of(answer)[2] == "Unknown product: NOPE-2"
    assert rpc.stats()["orders"] == 0 and rpc.stats()["created"] == {}


def test_a_second_create_is_accepted_as_a_duplicate(rpc: JsonRpcErpSandbox) -> None:
    headers = session(rpc)
    assert execute(rpc, headers, "create", [an_order("D-1")])["result"] == 1
    assert execute(rpc, headers, "create", [an_order("D-1")])["result"] == 2
    assert execute(rpc, headers, "create", [an_order("D-2")])["result"] == 3
    stats = rpc.stats()
    assert (stats["orders"], stats["duplicates"], stats["duplicate_numbers"]) == (3, 1, ["D-1"])
    assert stats["created"] == {"D-1": 2, "D-2": 1}
    assert [o["id"] for o in rpc.orders_for("D-1")] == [1, 2]


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"not json", -32700, "not JSON"),
        (b"\xff\xfe", -32700, "not JSON"),
        (b"[]", -32600, "batch"),
        (b'"call"', -32600, "not an object"),
        (b'{"jsonrpc": "1.0", "method": "call", "params": {}}', -32600, '"2.0"'),
        (b'{"jsonrpc": "2.0", "method": "execute", "params": {}}', -32601, '"call"'),
        (b'{"jsonrpc": "2.0", "method": "call", "params": []}', -32602, "params"),
        (b'{"jsonrpc": "2.0", "method": "call", "params": {"service": 1}}', -32602, "text"),
        (
            b'{"jsonrpc": "2.0", "method": "call", "params": {"service": "common", '
            b'"method": "login", "args": {}}}',
            -32602,
            "a list",
        ),
    ],
)
def test_a_malformed_envelope_is_a_jsonrpc_error(
    rpc: JsonRpcErpSandbox, body: bytes, code: int, says: str
) -> None:
    resp = requests.post(f"{rpc.url}/jsonrpc", data=body, timeout=5)
    assert resp.status_code == 200, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and says in err["data"]["message"], err


@pytest.mark.parametrize(
    ("args", "name", "says"),
    [
        (("db", "list"), "builtins.NameError", "service 'db'"),
        (("common", "drop_db"), "builtins.NameError", "'drop_db'"),
        (("common", "login", DB, LOGIN), "builtins.TypeError", "takes 3 arguments"),
        (("object", "execute_kw", DB, 2), "builtins.TypeError", "takes 6 or 7"),
        (("object", "execute_kw", DB, 2, PASSWORD, "res.partner", "search", [[]]),
         "builtins.KeyError", "'res.partner'"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "unlink", [[1]]),
         "builtins.AttributeError", "'unlink' does not exist"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search", []),
         "builtins.TypeError", "missing 1 required positional argument: 'domain'"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search", [[]], {"x": 1}),
         "builtins.TypeError", "unexpected keyword argument 'x'"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search", "[]"),
         "builtins.TypeError", "are a list"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search", [[["amount", ">", 1]]]),
         "builtins.ValueError", "Invalid field sale.order.amount"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search", [["|", "x"]]),
         "builtins.ValueError", "Invalid leaf '|'"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search", [[["id", "like", 1]]]),
         "builtins.ValueError", "operators"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "search_read", [[], ["pwd"]]),
         "builtins.ValueError", "Invalid field 'pwd'"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "create", [{"x": 1}]),
         "builtins.ValueError", "Invalid field 'x'"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "create", [{}]),
         "odoo.exceptions.ValidationError", "client_order_ref is required"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "create",
          [{"client_order_ref": "X", "order_line": [{"product_code": "TSH-001", "qty": 0,
                                                     "price": 1}]}]),
         "builtins.ValueError", "qty: a number above 0"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "create",
          [{"client_order_ref": "X", "amount_total": "1e999999"}]),
         "builtins.ValueError", "amount_total is a number"),
        (("object", "execute_kw", DB, 2, PASSWORD, "sale.order", "create",
          [{"client_order_ref": "X", "order_line": [{"product_code": ["TSH-001"] * 999}]}]),
         "odoo.exceptions.UserError", "Unknown product: ['TSH-001', "),
        (("object", "run", "sale.order"), "builtins.NameError", "'run'"),
    ],
)  # fmt: skip
def test_what_odoo_would_refuse_is_an_error_answer(
    rpc: JsonRpcErpSandbox, args: tuple[Any, ...], name: str, says: str
) -> None:
    answer = rpc_call(rpc, *args)
    code, got, message = error_of(answer)
    assert (code, got) == (200, name) and says in message, answer
    assert len(message) < 300  # what the caller sent is shown cut short
    assert rpc.stats()["orders"] == 0


def test_jsonrpc_faults_refuse_creates_fail_searches_expire_sessions_and_drop(
    rpc: JsonRpcErpSandbox,
) -> None:
    headers = session(rpc)
    set_faults(rpc.url, {"action": "app_error", "route": "create", "count": 2})
    for _ in range(2):
        _code, name, message = error_of(execute(rpc, headers, "create", [an_order("F-1")]))
        assert name == "odoo.exceptions.ValidationError" and "nothing was created" in message
    assert rpc.stats()["orders"] == 0
    assert execute(rpc, headers, "create", [an_order("F-1")])["result"] == 1

    set_faults(rpc.url, {"action": "app_error", "route": "search", "count": 1})
    domain = [[["client_order_ref", "=", "F-1"]]]
    assert error_of(execute(rpc, headers, "search_read", domain))[1] == (
        "psycopg2.errors.SerializationFailure"
    )
    assert len(execute(rpc, headers, "search_read", domain)["result"]) == 1

    # aimed at one order: others pass
    set_faults(rpc.url, {"action": "app_error", "route": "create", "numbers": ["F-3"]})
    assert execute(rpc, headers, "create", [an_order("F-2")])["result"] == 2
    assert "error" in execute(rpc, headers, "create", [an_order("F-3")])

    set_faults(rpc.url, {"action": "expire_sessions", "count": 1})
    assert session_expired(execute(rpc, headers, "search", [[]]))
    fresh = session(rpc)
    assert execute(rpc, fresh, "search", [[]])["result"] == [1, 2]
    assert session_expired(execute(rpc, headers, "search", [[]]))  # the old one stays dead
    assert rpc.stats()["sessions_expired_at_once"] == 1

    # the ERP creates the order, then the connection closes: the client cannot know
    set_faults(rpc.url, {"action": "drop_after_commit", "route": "create", "count": 1})
    with pytest.raises(requests.ConnectionError):
        execute(rpc, fresh, "create", [an_order("F-4")])
    assert [o["client_order_ref"] for o in rpc.orders_for("F-4")] == ["F-4"]
    # a session that never was is still expired; an Odoo-style call is untouched by it
    assert kw(rpc, "search", [[["client_order_ref", "=", "F-4"]]])["result"] == [3]


def test_the_rest_erp_keeps_its_actions_and_the_new_ones_are_checked(
    rpc: JsonRpcErpSandbox, soap: SoapErpSandbox
) -> None:
    with running_sandbox(1) as sb:
        resp = requests.post(f"{sb.erp.url}/_sandbox/faults",
                             json={"rules": [{"action": "app_error"}]}, timeout=5)  # fmt: skip
        assert resp.status_code == 400 and "'app_error'" in resp.json()["detail"]
        assert "app_error" not in resp.json()["allowed"]["actions"]
    for server, route in ((rpc, "search"), (soap, "find")):
        bad = {
            "rules": [
                {"action": "app_eror", "route": route},
                {"action": "status", "route": "query"},
            ]
        }
        resp = requests.post(f"{server.url}/_sandbox/faults", json=bad, timeout=5)
        assert resp.status_code == 400, resp.text
        detail = resp.json()["detail"]
        assert "rules[0].action: 'app_eror'" in detail and "app_error" in detail
        assert "'query' is not a route here" in detail
        allowed = resp.json()["allowed"]
        assert {"app_error", "expire_sessions", "drop_after_commit"} <= set(allowed["actions"])
        assert allowed["routes"] == type(server).route_names()
        assert requests.get(f"{server.url}/_sandbox/faults", timeout=5).json()["rules"] == []


# ------------------------------------------------------------------------------ SOAP
def soap_envelope(version: str, operation: str, inner: str, token: str | None = None) -> bytes:
    prefix, ns = ("soap", SOAP11) if version == "1.1" else ("env", SOAP12)
    header = ""
    if token is not None:
        header = (f'<{prefix}:Header><Session xmlns="{NS}"><Token>{token}</Token></Session>'
                  f"</{prefix}:Header>")  # fmt: skip
    return (
        f'<?xml version="1.0" encoding="utf-8"?><{prefix}:Envelope xmlns:{prefix}="{ns}">'
        f'{header}<{prefix}:Body><{operation} xmlns="{NS}">{inner}</{operation}>'
        f"</{prefix}:Body></{prefix}:Envelope>"
    ).encode()


def soap_headers(version: str, operation: str) -> dict[str, str]:
    if version == "1.1":
        return {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{soap_action(operation)}"',
        }
    return {
        "Content-Type": f'application/soap+xml; charset=utf-8; action="{soap_action(operation)}"'
    }


class Answer:
    """A SOAP answer, parsed (safely)."""

    def __init__(self, resp: requests.Response, version: str) -> None:
        self.status = resp.status_code
        self.text = resp.text
        expected = "text/xml" if version == "1.1" else "application/soap+xml"
        assert resp.headers["Content-Type"].startswith(expected), resp.headers
        self.root = fromstring(resp.content)
        env = SOAP11 if version == "1.1" else SOAP12
        assert self.root.tag == f"{{{env}}}Envelope", self.text
        body = self.root.find(f"{{{env}}}Body")
        assert body is not None and len(body) == 1
        self.op: Element = body[0]
        self.version = version

    def get(self, path: str) -> str | None:
        """Text at ``A/B`` under the answer's operation element (the operations namespace)."""
        found = self.op.find("/".join(f"{{{NS}}}{p}" for p in path.split("/")))
        return None if found is None else found.text

    def fault(self) -> tuple[int, str, str, str]:
        """(HTTP status, code, message, ErrorCode) of a Fault."""
        if self.version == "1.1":
            assert self.op.tag == f"{{{SOAP11}}}Fault", self.text
            code, message = self.op.findtext("faultcode"), self.op.findtext("faultstring")
            error = self.op.findtext(f"detail/{{{NS}}}ErrorCode")
        else:
            e = f"{{{SOAP12}}}"
            assert self.op.tag == f"{e}Fault", self.text
            code = self.op.findtext(f"{e}Code/{e}Value")
            message = self.op.findtext(f"{e}Reason/{e}Text")
            error = self.op.findtext(f"{e}Detail/{{{NS}}}ErrorCode")
        return self.status, code or "", message or "", error or ""


def soap_post(
    server: SoapErpSandbox, version: str, operation: str, inner: str, token: str | None = None
) -> Answer:
    resp = requests.post(
        f"{server.url}/soap",
        data=soap_envelope(version, operation, inner, token),
        headers=soap_headers(version, operation),
        timeout=10,
    )
    assert SOAP_PASSWORD not in resp.text
    return Answer(resp, version)


def soap_login(server: SoapErpSandbox, version: str = "1.1") -> str:
    answer = soap_post(server, version, "Login",
                       f"<User>{SOAP_USER}</User><Password>{SOAP_PASSWORD}</Password>")  # fmt: skip
    assert answer.status == 200, answer.text
    token = answer.get("SessionToken")
    assert token and len(token) >= 24
    return token


def create_xml(number: str, *codes: str, total: str = "") -> str:
    lines = "".join(
        f"<Line><ProductCode>{c}</ProductCode><Quantity>2</Quantity><Price>249.90</Price>"
        f"<ExternalId>{i + 1}</ExternalId></Line>"
        for i, c in enumerate(codes or ("TSH-001",))
    )
    total_el = f"<Total>{total}</Total>" if total else ""
    return (f"<Order><Number>{number}</Number><Email>a@example.com</Email>{total_el}"
            f"<Lines>{lines}</Lines></Order>")  # fmt: skip


FAULT_CODES = {  # (version, the client's) → (HTTP status, faultcode / Code/Value)
    ("1.1", True): (500, "soap:Client"),
    ("1.1", False): (500, "soap:Server"),
    ("1.2", True): (400, "env:Sender"),
    ("1.2", False): (500, "env:Receiver"),
}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_soap_login_find_and_create_in_the_version_asked(
    soap: SoapErpSandbox, version: str
) -> None:
    token = soap_login(soap, version)
    found = soap_post(soap, version, "FindOrder", "<Number>W-1</Number>", token)
    assert (found.status, found.get("Found"), found.get("Count"), found.get("OrderId")) == (
        200, "false", "0", None,
    )  # fmt: skip
    made = soap_post(soap, version, "CreateOrder", create_xml("W-1", "TSH-001", "SAL-310"), token)
    assert made.status == 200 and made.get("OrderId") == "SO000001", made.text
    lines = [(x.findtext(f"{{{NS}}}ExternalId"), x.findtext(f"{{{NS}}}LineId"))
             for x in made.op.iterfind(f"{{{NS}}}Lines/{{{NS}}}Line")]  # fmt: skip
    assert lines == [("1", "SO000001-1"), ("2", "SO000001-2")]
    found = soap_post(soap, version, "FindOrder", "<Number>W-1</Number>", token)
    assert (found.get("Found"), found.get("Count"), found.get("OrderId")) == (
        "true", "1", "SO000001",
    )  # fmt: skip
    assert soap.orders_for("W-1")[0]["total"] == "999.60"  # computed: 2 x (249.90 + 249.90)
    stats = soap.stats()
    assert stats["logins"] == {"Login": 1} and stats["password_checks"] == 1
    assert stats["operations"] == {"Login": 1, "FindOrder": 2, "CreateOrder": 1}
    assert stats["session_checks"] == 3 and stats["sessions_rejected"] == 0


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_soap_faults_in_each_version(soap: SoapErpSandbox, clock: Clock, version: str) -> None:
    answer = soap_post(soap, version, "Login", f"<User>{SOAP_USER}</User><Password>no</Password>")
    assert answer.fault() == (*FAULT_CODES[version, True], "invalid user or password",
                              "LOGIN_FAILED")  # fmt: skip
    token = soap_login(soap, version)
    for given in (None, "", "forged-token-00000000000000000"):
        answer = soap_post(soap, version, "FindOrder", "<Number>1</Number>", given)
        status, code, _message, error = answer.fault()
        assert (status, code, error) == (*FAULT_CODES[version, True], "SESSION_EXPIRED"), given
    answer = soap_post(soap, version, "CreateOrder", create_xml("P-1", "TSH-001", "NOPE-9"),
                       token)  # fmt: skip
    assert answer.fault() == (*FAULT_CODES[version, True], "Unknown product: NOPE-9",
                              "UNKNOWN_PRODUCT")  # fmt: skip
    assert soap.stats()["orders"] == 0
    clock.now += 61
    answer = soap_post(soap, version, "CreateOrder", create_xml("P-1"), token)
    assert answer.fault()[3] == "SESSION_EXPIRED" and soap.stats()["orders"] == 0
    # a server-side Fault: an injected one on FindOrder
    token = soap_login(soap, version)
    set_faults(soap.url, {"action": "app_error", "route": "find", "count": 1})
    answer = soap_post(soap, version, "FindOrder", "<Number>1</Number>", token)
    assert answer.fault() == (*FAULT_CODES[version, False], "injected: the order database is "
                              "busy", "SERVER_ERROR")  # fmt: skip


def test_a_duplicate_create_order_is_accepted_and_counted(soap: SoapErpSandbox) -> None:
    token = soap_login(soap)
    ids = [soap_post(soap, "1.1", "CreateOrder", create_xml("Q-1"), token).get("OrderId")
           for _ in range(2)]  # fmt: skip
    assert ids == ["SO000001", "SO000002"]
    found = soap_post(soap, "1.1", "FindOrder", "<Number>Q-1</Number>", token)
    assert (found.get("Count"), found.get("OrderId")) == ("2", "SO000001")
    stats = soap.stats()
    assert (stats["orders"], stats["duplicate_numbers"], stats["created"]) == (
        2, ["Q-1"], {"Q-1": 2},
    )  # fmt: skip


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<Login xmlns="urn:sandbox-erp"><User>&lol3;</User></Login></soap:Body></soap:Envelope>'
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<FindOrder xmlns="urn:sandbox-erp"><Number>&xxe;</Number></FindOrder></soap:Body>'
    b"</soap:Envelope>"
)
TEXT_XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
SOAP12_CT = {"Content-Type": "application/soap+xml"}


def env11(body: str, header: str = "") -> bytes:
    return (f'<soap:Envelope xmlns:soap="{SOAP11}">{header}<soap:Body>{body}</soap:Body>'
            "</soap:Envelope>").encode()  # fmt: skip


@pytest.mark.parametrize(
    ("data", "headers", "status", "error", "says"),
    [
        (BILLION_LAUGHS, TEXT_XML, 500, "INVALID_XML", "DTDForbidden"),
        (EXTERNAL, TEXT_XML, 500, "INVALID_XML", "refused, not parsed"),
        (EXTERNAL, SOAP12_CT, 400, "INVALID_XML", "refused, not parsed"),
        (b"<soap:Envelope", TEXT_XML, 500, "INVALID_XML", "not well-formed"),
        (b"", TEXT_XML, 500, "INVALID_XML", "not well-formed"),
        (b'{"Login": {}}', TEXT_XML, 500, "INVALID_XML", "not well-formed"),
        (b"<a/>", TEXT_XML, 500, "INVALID_ENVELOPE", "expected a SOAP Envelope"),
        (env11(""), TEXT_XML, 500, "INVALID_ENVELOPE", "exactly one operation"),
        (env11(f'<Login xmlns="{NS}"/><Login xmlns="{NS}"/>'), TEXT_XML, 500,
         "INVALID_ENVELOPE", "exactly one operation"),
        (env11('<Login xmlns="urn:other"/>'), TEXT_XML, 500, "UNKNOWN_OPERATION", "urn:other"),
        (env11(f'<DeleteOrder xmlns="{NS}"/>'), TEXT_XML, 500, "UNKNOWN_OPERATION",
         "Login, FindOrder, CreateOrder"),
        (env11(f'<Login xmlns="{NS}"/>'), {"Content-Type": "text/xml"}, 500, "NO_SOAPACTION",
         "SOAPAction"),
        (env11(f'<Login xmlns="{NS}"/>'), {**TEXT_XML, "SOAPAction": f'"{NS}/CreateOrder"'},
         500, "ACTION_MISMATCH", "does not match the operation Login"),
        (env11(f'<Login xmlns="{NS}"/>'), {"Content-Type": "application/json"}, 415,
         "UNSUPPORTED_MEDIA_TYPE", "SOAP 1.2 as application/soap+xml"),
        (env11(f'<FindOrder xmlns="{NS}"><Number>1</Number></FindOrder>'), SOAP12_CT, 500,
         "VERSION_MISMATCH", "a SOAP 1.1 envelope sent as SOAP 1.2"),
    ],
)  # fmt: skip
def test_a_hostile_or_malformed_request_is_a_client_fault_never_parsed(
    soap: SoapErpSandbox,
    data: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
    says: str,
) -> None:
    resp = requests.post(f"{soap.url}/soap", data=data, headers=headers, timeout=10)
    version = "1.2" if headers["Content-Type"].startswith("application/soap+xml") else "1.1"
    got = Answer(resp, version).fault()
    assert (got[0], got[3]) == (status, error) and says in got[2], got
    kind = {"VERSION_MISMATCH": "VersionMismatch"}.get(error)
    client = "Client" if version == "1.1" else "Sender"
    assert got[1] == f"{'soap' if version == '1.1' else 'env'}:{kind or client}"
    assert "lol" not in got[2] and Path("/etc/hostname").read_text().strip() not in resp.text
    assert soap.stats()["logins"] == {"Login": 0} and soap.stats()["orders"] == 0


@pytest.mark.parametrize(
    ("order", "says"),
    [
        ("<Order><Email>x</Email></Order>", "Order/Number is required"),
        ("<Nothing/>", "needs an Order element"),
        (create_xml("V-1").replace("<Quantity>2", "<Quantity>1e999999"), "Quantity is a whole"),
        (create_xml("V-1").replace("<Quantity>2", "<Quantity>1.5"), "Quantity is a whole"),
        (create_xml("V-1").replace("<Price>249.90", "<Price>NaN"), "Price is a decimal"),
        (create_xml("V-1", total="lots"), "Total is a decimal"),
        (create_xml("V-1").replace("<Line>", "<Row>", 1).replace("</Line>", "</Row>", 1),
         "Line elements only"),
    ],
)  # fmt: skip
def test_an_order_it_cannot_take_is_an_invalid_order_fault(
    soap: SoapErpSandbox, order: str, says: str
) -> None:
    answer = soap_post(soap, "1.1", "CreateOrder", order, soap_login(soap))
    status, _code, message, error = answer.fault()
    assert (status, error) == (500, "INVALID_ORDER") and says in message, message
    assert soap.stats()["orders"] == 0


def test_xml_special_characters_travel_escaped(soap: SoapErpSandbox) -> None:
    token = soap_login(soap)
    number = "A&amp;B&lt;C&gt;&quot;]]&gt;"  # A&B<C>"]]>
    made = soap_post(soap, "1.2", "CreateOrder", create_xml(number), token)
    assert made.status == 200, made.text
    assert soap.orders_for('A&B<C>"]]>') and made.get("OrderId") == "SO000001"
    found = soap_post(soap, "1.2", "FindOrder", f"<Number>{number}</Number>", token)
    assert found.get("Found") == "true"


def test_soap_fault_injection(soap: SoapErpSandbox) -> None:
    token = soap_login(soap)
    set_faults(soap.url, {"action": "app_error", "route": "create", "count": 1})
    answer = soap_post(soap, "1.1", "CreateOrder", create_xml("I-1"), token)
    assert answer.fault()[1:] == ("soap:Client", "injected: the ERP refused this order "
                                  "(nothing was created)", "REFUSED")  # fmt: skip
    assert soap.stats()["orders"] == 0
    assert soap_post(soap, "1.1", "CreateOrder", create_xml("I-1"), token).get("OrderId")

    set_faults(soap.url, {"action": "expire_sessions", "route": "find", "count": 1})
    answer = soap_post(soap, "1.1", "FindOrder", "<Number>I-1</Number>", token)
    assert answer.fault()[3] == "SESSION_EXPIRED"
    token = soap_login(soap)
    assert soap_post(soap, "1.1", "FindOrder", "<Number>I-1</Number>", token).get("Found") == (
        "true"
    )

    set_faults(soap.url, {"action": "drop_after_commit", "route": "create", "numbers": ["I-2"]})
    with pytest.raises(requests.ConnectionError):
        soap_post(soap, "1.1", "CreateOrder", create_xml("I-2"), token)
    assert len(soap.orders_for("I-2")) == 1  # created: the client could not know
    assert soap_post(soap, "1.1", "CreateOrder", create_xml("I-3"), token).get("OrderId")


# -------------------------------------------------------------------------- the CLI
def test_integrator_sandbox_serves_both_erps_and_writes_their_env(tmp_path: Path) -> None:
    root = make_project(tmp_path, {}).root
    with sandbox_cmd(root) as sb:
        out = "".join(sb.seen)
        assert "wrote .env" in out, out
        env = dict(
            line.split("=", 1)
            for line in (root / ".env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        for key in ("JSONRPC_ERP_URL", "SOAP_ERP_URL", "JSONRPC_ERP_DB", "JSONRPC_ERP_LOGIN",
                    "JSONRPC_ERP_PASSWORD", "SOAP_ERP_USER", "SOAP_ERP_PASSWORD"):  # fmt: skip
            assert env.get(key), (key, env)
        url = env["JSONRPC_ERP_URL"]
        body = envelope("common", "session_login", env["JSONRPC_ERP_DB"],
                        env["JSONRPC_ERP_LOGIN"], env["JSONRPC_ERP_PASSWORD"])  # fmt: skip
        uid, key = requests.post(f"{url}/jsonrpc", json=body, timeout=10).json()["result"]
        assert uid == 2 and len(key) >= 24
        login = (f"<User>{env['SOAP_ERP_USER']}</User>"
                 f"<Password>{env['SOAP_ERP_PASSWORD']}</Password>")  # fmt: skip
        resp = requests.post(f"{env['SOAP_ERP_URL']}/soap", data=soap_envelope("1.2", "Login",
                             login), headers=soap_headers("1.2", "Login"), timeout=10)  # fmt: skip
        assert Answer(resp, "1.2").get("SessionToken")
        # Omnitron's orders seeded as sent are in both ERPs already (not counted as created)
        stats = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
        assert stats["preloaded"] == stats["orders"] > 0 and stats["received"] == 0

        # `integrator sandbox fault` reaches them, found through .env
        r = cli(root, "sandbox", "fault", "jsonrpc", "--route", "create", "--action",
                "app_error", "--count", "1")  # fmt: skip
        assert r.code == 0 and "app_error on create, 1 more call" in r.out, r
        r = cli(root, "sandbox", "fault", "soap", "--action", "explode")
        assert r.code == 2 and "expected one of app_error" in r.err, r
        r = cli(root, "sandbox", "fault", "show", "jsonrpc", "soap")
        assert r.code == 0 and "soap (" in r.out and "no faults" in r.out, r
        vals = {"client_order_ref": "CLI-1", "order_line": [{"product_code": "TSH-001",
                                                             "price": 1}]}  # fmt: skip
        headers = {"Authorization": "Session " + base64.b64encode(
            f"{env['JSONRPC_ERP_LOGIN']}:{uid}:{key}".encode()).decode()}  # fmt: skip
        made = [
            requests.post(
                f"{url}/jsonrpc",
                json=envelope("object", "execute", "sale.order", "create", [vals]),
                headers=headers,
                timeout=10,
            ).json()
            for _ in range(2)
        ]
        assert "injected" in made[0]["error"]["data"]["message"] and isinstance(
            made[1]["result"], int
        )


def test_the_sandbox_help_names_the_new_servers(project: Project) -> None:
    r = project.run("sandbox", "--help")
    text = " ".join(r.out.split())
    assert r.code == 0
    assert f"jsonrpc {', '.join(JsonRpcErpSandbox.route_names())}" in text
    assert f"soap {', '.join(SoapErpSandbox.route_names())}" in text
    assert "--jsonrpc-erp-port" in text and "--soap-erp-port" in text
    assert "app_error: the call gets its protocol's application error" in text


def test_the_sandbox_env_names_the_new_erps() -> None:
    with running_sandbox(3) as sb:
        env = sb.env()
        assert sb.jsonrpc_erp is not None and sb.soap_erp is not None
        assert env["JSONRPC_ERP_URL"] == sb.jsonrpc_erp.url
        assert env["SOAP_ERP_URL"] == sb.soap_erp.url
        for key in ("JSONRPC_ERP_PASSWORD", "SOAP_ERP_PASSWORD"):
            assert env[key] == SANDBOX_ENV[key]
    assert "JSONRPC_ERP_URL" not in clean_env()
    with running_sandbox(1, jsonrpc_erp_port=None, soap_erp_port=None) as sb:
        assert "SOAP_ERP_URL" not in sb.env() and "JSONRPC_ERP_URL" not in sb.env()

"""Bad input from the outside: each gives the order a clear failure, never a crash or a
second write. Through the real CLI and real HTTP; the parsers fuzzed with hypothesis."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Project, assert_exactly_once, fault_rule, faults, stats, unsent

from integrator.connectors.http import parse_json
from integrator.errors import PermanentError, UnreadableAnswer
from integrator.sandbox import Sandbox
from integrator.stages.check_response import DEFAULTS, default_mapping_data


def run(project: Project) -> Any:
    return project.run("run-flow", "order_flow", "--no-progress")


def events_of(project: Project, number: str | None) -> list[str]:
    where = "IS NULL" if number is None else f"= '{number}'"
    return [m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number {where}")]


def test_erp_answers_html_after_taking_the_order(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    bad = numbers[0]
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="create",
        status=200,
        body="<html><body>Order saved!</body></html>",
        commit=True,
        numbers=[bad],
    )
    r = run(project)
    assert r.code == 1 and "not JSON" in r.out and "not repeated" in r.out
    assert "Traceback" not in r.out + r.err
    assert project.state(bad) == "sent" and sandbox.erp.received[bad] == 1
    faults(sandbox.erp.url, {})
    r = run(project)  # resumes after the write: never written a second time
    assert sandbox.erp.received[bad] == 1 and stats(sandbox.erp.url)["duplicates"] == 0
    assert project.state(bad) in ("sent", "quarantined")


def test_erp_answers_an_empty_body(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    bad = numbers[1]
    fault_rule(
        sandbox.erp.url, action="body", route="create", status=201, body="", commit=True,
        numbers=[bad],
    )  # fmt: skip
    r = run(project)
    assert r.code == 1 and "no ERP reference" in r.out
    assert project.state(bad) == "sent" and sandbox.erp.received[bad] == 1
    assert all(project.state(n) == "done" for n in numbers if n != bad)


def test_json_rpc_error_inside_a_200(project: Project, sandbox: Sandbox) -> None:
    """The check_response script reads the error and marks the order rejected: resent later."""
    numbers = unsent(sandbox)
    bad = numbers[2]
    script = project.root / "scripts" / "check_rpc.py"
    script.write_text(
        "def check_response(response, attributes):\n"
        "    if 'error' in response:\n"
        "        attributes['erp.rejected'] = 'true'\n"
        "        raise ValueError('ERP refused: ' + response['error']['message'])\n"
        "    return {'order': {'erp_order_id': response['id']}, 'order_items': []}\n"
    )
    project.edit_flow(
        "  - check_response\n", "  - check_response:\n      script: scripts/check_rpc.py\n"
    )
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="create",
        status=200,
        body=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "no stock"}}
        ),
        content_type="application/json",
        numbers=[bad],
    )
    r = run(project)
    assert r.code == 1 and "ERP refused: no stock" in r.out
    assert project.state(bad) == "failed" and bad not in sandbox.erp.received
    faults(sandbox.erp.url, {})
    r = run(project)
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)


def test_huge_and_invalid_answers_fail_one_order(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    big, broken = numbers[3], numbers[4]
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    faults(
        sandbox.erp.url,
        {
            "rules": [
                {"action": "body", "route": "query", "status": 200, "body": "x" * 1024,
                 "repeat": 17 * 1024, "content_type": "application/json", "numbers": [big]},
                {"action": "body", "route": "query", "status": 200, "body": '{"count": ',
                 "content_type": "application/json", "numbers": [broken]},
            ]
        },
    )  # fmt: skip
    r = run(project)
    assert r.code == 1
    assert "more than the 16,777,216 bytes an answer may have" in r.out
    assert "not JSON (application/json)" in r.out
    assert project.state(big) == "failed" and project.state(broken) == "failed"
    assert big not in sandbox.erp.received and broken not in sandbox.erp.received
    faults(sandbox.erp.url, {})
    assert run(project).code == 0
    assert_exactly_once(sandbox, numbers)


def test_omnitron_page_and_detail_with_wrong_shapes(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    wrong = numbers[0]
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    faults(
        sandbox.omnitron.url,
        {
            "rules": [
                {"action": "body", "route": "list", "status": 200, "count": 1,
                 "content_type": "application/json",
                 "body": json.dumps({"results": [{"number": "X1"}, {"pk": "7", "number": "X2"},
                                                 "nonsense"], "next": None})},
                {"action": "body", "route": "detail", "status": 200,
                 "content_type": "application/json", "body": json.dumps({"pk": -1}),
                 "numbers": [wrong]},
            ]
        },
    )  # fmt: skip
    r = run(project)
    assert r.code == 0, r.out + r.err  # a page of bad rows: each skipped with an event
    skipped = events_of(project, None)
    assert len([m for m in skipped if m.startswith("order list row")]) == 3
    assert any("expected an integer 'pk'" in m for m in skipped)
    r = run(project)
    assert r.code == 1 and "the detail answer is not the order" in r.out
    assert project.state(wrong) == "failed"
    faults(sandbox.omnitron.url, {})
    assert run(project).code == 0
    assert_exactly_once(sandbox, numbers)


# ------------------------------------------------------------------ fuzzing
def response(body: bytes, status: int = 200, ctype: str = "application/json") -> requests.Response:
    r = requests.Response()
    r.status_code, r._content = status, body
    r.headers["Content-Type"] = ctype
    return r


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_json_bytes(body: bytes) -> None:
    """Any bytes: a value, or an UnreadableAnswer that names the call (never another error)."""
    try:
        parse_json(response(body), "POST erp:/api/orders/", "erp")
    except UnreadableAnswer as exc:
        assert "erp:/api/orders/" in str(exc) and exc.connector == "erp"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
        (b'{"total": NaN}', "not JSON"),
        (b'{"total": Infinity}', "not JSON"),
        (b"9" * 10_000, "not JSON"),
    ],
)
def test_answers_that_cannot_be_read(body: bytes, why: str) -> None:
    """Deep nesting, invalid UTF-8, NaN and huge numbers end as a clear UnreadableAnswer."""
    with pytest.raises(UnreadableAnswer, match=why):
        parse_json(response(body), "GET omnitron:/api/i1/orders/", "omnitron")


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_default_check_response(answer: Any) -> None:
    """Any JSON answer: mapping data, or a PermanentError that says what is missing."""
    body = json.dumps(answer).encode()
    try:
        parsed = parse_json(response(body), "POST erp:/api/orders/")
        data = default_mapping_data(parsed, DEFAULTS)
    except (PermanentError, UnreadableAnswer):
        return
    assert set(data) == {"order", "order_items"}
    assert data["order"]["erp_order_id"] not in (None, "")

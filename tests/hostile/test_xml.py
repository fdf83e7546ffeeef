"""Hostile XML answers, through the real CLI: the ERP's duplicate check (query_check) or its
write is answered with XML that attacks the parser, then a clean run. Every case makes the
suite's checks (``support.hostile.Hostile.check``: nothing twice, nothing lost, bounded time
and memory, a clear message naming the connector) and these: nothing was fetched (the trap on
127.0.0.2, where the external DTDs and entities point, got no request), no run printed
``/etc/passwd``, and no message carries the answer's markup.

Then XML answers that are fine: query_check and write read them (``parse_answer``), and the
answer paths work on the converted document.
"""

from __future__ import annotations

import os

import pytest
from support.hostile import Case, Hostile

DTD = ("dtd",)  # a DTD is refused: entities, external anything, nothing fetched

CASES: dict[str, Case] = {
    "query-xml-billion-laughs": Case("erp", "query", "xml_billion_laughs", DTD),
    "query-xml-quadratic": Case("erp", "query", "xml_quadratic", DTD),
    "query-xml-external-entity": Case("erp", "query", "xml_external_entity", DTD),
    "query-xml-external-dtd": Case("erp", "query", "xml_external_dtd", DTD),
    "query-xml-parameter-entity": Case("erp", "query", "xml_parameter_entity", DTD),
    "query-xml-deep": Case("erp", "query", "xml_deep", ("nested deeper than 64 levels",)),
    # well-formed and within MaxAnswerBytes: read in linear time, the order goes through
    "query-xml-huge-attribute": Case("erp", "query", "xml_huge_attribute", fails=False),
    "query-xml-lying-encoding": Case(
        "erp", "query", "xml_lying_encoding", ("not well-formed at line 3",)
    ),
    # a SOAP Fault (400) whose faultstring is an HTML page: the message is its words
    "query-xml-fault-html": Case(
        "erp",
        "query",
        "xml_fault_html",
        ("with a soap 1.1 fault (server): 500 internal server error",),
        status=400,
    ),
    # a 200 Fault with raw HTML inside: not XML
    "query-xml-fault-raw-html": Case(
        "erp", "query", "xml_fault_raw_html", ("not well-formed at line 4",), status=200
    ),
    "query-xml-gzip-laughs": Case("erp", "query", "xml_gzip_laughs", DTD),
    "query-xml-gzip-bomb": Case("erp", "query", "xml_gzip_bomb", ("bytes",)),
    # the ERP took the write, then answered a bomb: recorded sent, held for a person
    "write-xml-billion-laughs": Case("erp", "write", "xml_billion_laughs", DTD, may_hold=True),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_xml_answer(hostile: Hostile, case: Case) -> None:
    problems = hostile.case(case)
    for proxy in (hostile.omnitron, hostile.erp):
        problems += [f"fetched from the trap: {s.method} {s.target}" for s in proxy.trap.seen]
    for i, run in enumerate(hostile.runs, 1):
        if "root:x:0:0" in run.text:
            problems.append(f"run {i} printed /etc/passwd")
        for markup in ("&lt;", "<html", "<script", "<soap:", "<!DOCTYPE", "<!ENTITY"):
            if markup in run.text:
                problems.append(f"run {i} printed the answer's markup {markup!r}")
    if os.environ.get("HOSTILE_SHOW"):
        print("\n".join(hostile.transcript()))
    if problems:
        pytest.fail("\n".join(problems + hostile.transcript()), pytrace=False)


SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}">'
        f'<soap:Body xmlns:m="urn:erp">{body}</soap:Body></soap:Envelope>'
    ).encode()


def test_query_check_reads_an_xml_answer(hostile: Hostile) -> None:
    """The ERP answers the duplicate check in SOAP: found (the order is there) → not written
    again, marked; not found → written once."""
    sb, project = hostile.sb, hostile.project
    held, new = hostile.numbers[1], hostile.numbers[2]
    sb.erp.preload(held, "1.00", "2024-01-01T00:00:00Z")  # delivered before, never marked
    path = "count || Envelope.Body.QueryOrderResponse.Count"
    ref = "id || results[0].id || Envelope.Body.QueryOrderResponse.Order.Id"
    project.edit_flow("response_path: count\n", f'response_path: "{path}"\n')
    project.edit_flow(
        "  - check_response\n", f'  - check_response:\n      reference_path: "{ref}"\n'
    )
    query = r"^/api/orders/\?(.*&)?number={}(&|$)"
    found = envelope(
        "<m:QueryOrderResponse><m:Count>1</m:Count><m:Order><m:Id>ERP-OLD-1</m:Id></m:Order>"
        "</m:QueryOrderResponse>"
    )
    missing = envelope("<m:QueryOrderResponse><m:Count>0</m:Count></m:QueryOrderResponse>")
    hits = [
        hostile.erp.hostile("xml", method="GET", path=query.format(held), answer=found),
        hostile.erp.hostile("xml", method="GET", path=query.format(new), answer=missing),
    ]
    run = hostile.run()
    assert run.code == 0, hostile.transcript()
    assert all(rule.hits for rule in hits)
    assert sb.erp.received.get(held, 0) == 0 and hostile.sent(held)  # not written again
    assert hostile.delivered(new)
    assert all(hostile.delivered(n) for n in hostile.numbers if n != held)
    rows = project.sql(f"SELECT state, erp_ref FROM journal WHERE order_number = '{held}'")
    assert rows == [("done", "ERP-OLD-1")]


def test_write_reads_a_soap_answer(hostile: Hostile) -> None:
    """The ERP answers the write in SOAP (the order is created): its reference is read by a
    path into the envelope."""
    project = hostile.project
    target = hostile.numbers[1]
    ref = "id || results[0].id || Envelope.Body.CreateOrderResponse.OrderId"
    project.edit_flow(
        "  - check_response\n", f'  - check_response:\n      reference_path: "{ref}"\n'
    )
    answer = envelope(
        '<m:CreateOrderResponse status="created"><m:OrderId>SOAP-77</m:OrderId>'
        "</m:CreateOrderResponse>"
    )
    rule = hostile.erp.hostile(
        "xml", method="POST", path=r"^/api/orders/$", body=f'"{target}"', answer=answer,
        status=201,
    )  # fmt: skip
    run = hostile.run()
    assert run.code == 0, hostile.transcript()
    assert rule.hits == 1
    assert all(hostile.delivered(n) for n in hostile.numbers)
    rows = project.sql(f"SELECT state, erp_ref FROM journal WHERE order_number = '{target}'")
    assert rows == [("done", "SOAP-77")]

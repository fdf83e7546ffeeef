"""One test per hostile case, through the real CLI: the proxy misbehaves for one order (or the
login, or the listing), then a clean run. Every test makes the same checks
(``support.hostile.Hostile.check``): nothing sent twice, nothing lost, the run ends by itself
within its bound, memory stays bounded, the user is told clearly.

The keywords the output must contain: a deadline says "within", a size "bytes", a redirect
"redirect", an answer that cannot be read "answered" (with the connector's name).
"""

from __future__ import annotations

import os

import pytest
from support.hostile import Case, Hostile

DEADLINE, SIZE, REDIRECT, UNREADABLE = ("within",), ("bytes",), ("redirect",), ("answered",)

CASES: dict[str, Case] = {
    # the proxy itself: everything goes through
    "pass-through": Case("erp", "write", "pass", fails=False),
    # one order's detail from Omnitron cannot be read: that order fails alone, the run goes on
    "detail-drip-body": Case("omnitron", "detail", "drip_body", DEADLINE),
    "detail-endless-chunked": Case("omnitron", "detail", "endless_chunked", SIZE),
    "detail-gzip-bomb": Case("omnitron", "detail", "gzip_bomb", SIZE),
    "detail-html-200": Case("omnitron", "detail", "html", UNREADABLE, status=200),
    "detail-invalid-utf8": Case("omnitron", "detail", "invalid_utf8", UNREADABLE),
    "detail-deep-json": Case("omnitron", "detail", "deep_json", UNREADABLE),
    "detail-nan": Case("omnitron", "detail", "nan", UNREADABLE, key="amount"),
    "detail-huge-float": Case("omnitron", "detail", "huge_float", UNREADABLE, key="amount"),
    "detail-huge-int": Case("omnitron", "detail", "huge_int", UNREADABLE, key="amount"),
    "detail-fake-gzip": Case("omnitron", "detail", "fake_gzip", ("gzip",)),
    "detail-close-mid-body": Case(
        "omnitron", "detail", "close_mid_body", ("closed", "incomplete", "cut")
    ),
    # a GET may follow a redirect within the same host
    "detail-301-same-host": Case("omnitron", "detail", "redirect", fails=False, status=301),
    # ... and never carries credentials to another one
    "detail-302-other-host": Case(
        "omnitron", "detail", "redirect", REDIRECT, status=302, to="other"
    ),
    # the ERP's duplicate check (query_check) gets a huge or a stalled answer
    "query-2gb-content-length": Case("erp", "query", "huge_length", SIZE),
    "query-stall-after-headers": Case("erp", "query", "stall", DEADLINE),
    # the ERP committed the write, then its answer misbehaves: settled, never resent
    "write-drip-headers": Case("erp", "write", "drip_headers", DEADLINE),
    "write-html-502": Case("erp", "write", "html", UNREADABLE, status=502),
    "write-not-json-200": Case("erp", "write", "not_json", UNREADABLE, may_hold=True),
    # (a 2xx whose body cannot be read: the ERP took the order; it may wait for a person)
    "write-close-mid-body": Case(
        "erp", "write", "close_mid_body", ("closed", "incomplete", "cut"), may_hold=True
    ),
    "write-301-same-host": Case("erp", "write", "redirect", REDIRECT, status=301),
    "write-302-same-host": Case("erp", "write", "redirect", REDIRECT, status=302),
    "write-307-same-host": Case("erp", "write", "redirect", REDIRECT, status=307),
    "write-308-same-host": Case("erp", "write", "redirect", REDIRECT, status=308),
    "write-308-other-host": Case("erp", "write", "redirect", REDIRECT, status=308, to="other"),
    # Omnitron took the mark, its answer drips: the order is marked once it is settled (asking
    # Omnitron in the same run is as good)
    "mark-drip-body": Case("omnitron", "mark", "drip_body", DEADLINE, may_recover=True),
    # the login's password must not follow a redirect to another host
    "login-307-other-host": Case(
        "omnitron", "login", "redirect", REDIRECT, status=307, to="other", forward=False
    ),
    # the order list drips: the listing ends within the deadline, the run with it
    "list-drip-headers": Case("omnitron", "list", "drip_headers", DEADLINE),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_answer(hostile: Hostile, case: Case) -> None:
    problems = hostile.case(case)
    if os.environ.get("HOSTILE_SHOW"):  # -s HOSTILE_SHOW=1: what each run printed
        print("\n".join(hostile.transcript()))
    if problems:
        pytest.fail("\n".join(problems + hostile.transcript()), pytrace=False)

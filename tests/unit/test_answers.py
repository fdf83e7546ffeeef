"""Answer rules: what an answer means, by paths (unit tests; the sandbox ERPs test them end to
end through the CLI)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector, Redactor
from integrator.connectors.answers import NO_RULES, AnswerRules, Outcome
from integrator.errors import AmbiguousWriteError, ErpRefused, RetriableError

JSONRPC = AnswerRules(
    refused="error",
    session_expired="error.code == `100`",
    message="error.data.message || error.message",
    id_path="result",
    declared=True,
)


@pytest.mark.parametrize(
    ("answer", "status", "outcome", "message"),
    [
        ({"result": 7}, 200, Outcome.OK, ""),
        (
            {"error": {"code": 200, "data": {"message": "Unknown product: X"}}},
            200,
            Outcome.REFUSED,
            "Unknown product: X",
        ),
        (
            {"error": {"code": 100, "message": "Session expired"}},
            200,
            Outcome.SESSION_EXPIRED,
            "Session expired",
        ),
        ({"error": {"code": 100}}, 500, Outcome.SESSION_EXPIRED, ""),  # rules read non-2xx too
        ({"detail": "boom"}, 500, None, ""),  # no rule matched: the status code decides
    ],
)
def test_rules_judge_answers(
    answer: Any, status: int, outcome: Outcome | None, message: str
) -> None:
    verdict = JSONRPC.judge(answer, status)
    assert (verdict.outcome if verdict else None) is outcome
    assert verdict is None or verdict.message == message


def test_no_rules_keep_the_status_code_deciding_and_ok_guards_success() -> None:
    assert NO_RULES.judge({"error": "x"}, 200) is None
    strict = AnswerRules(ok="result.id", declared=True)
    verdict = strict.judge({"result": {}}, 200)
    assert verdict is not None and verdict.outcome is Outcome.MAY_HAVE_LANDED
    assert JSONRPC.reference({"result": 42}) == "42"


class Answers(BaseAdapter):
    """Answers JSON bodies in turn (unit tests only)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent = 0

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        status, body = self.answers[min(self.sent, len(self.answers) - 1)]
        self.sent += 1
        resp = requests.Response()
        resp.status_code, resp._content, resp.url = (
            status,
            json.dumps(body).encode(),
            request.url or "",
        )
        resp.headers["Content-Type"] = "application/json"
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def conn(adapter: BaseAdapter) -> Connector:
    c = Connector(
        ConnectorConfig(name="erp", host="http://erp.test", retry_attempts=3, retry_base=0.001),
        Redactor(["s3cret-value"]),
    )
    c._sleep = lambda _s: None
    c.session.mount("http://", adapter)
    return c


def test_a_refusal_is_erp_refused_with_the_erps_words_masked() -> None:
    said = {"error": {"code": 200, "data": {"message": "no product for key s3cret-value"}}}
    adapter = Answers((200, said))
    with pytest.raises(ErpRefused) as err:
        conn(adapter).request("POST", "/jsonrpc", json_body={}, idempotent=False, answer=JSONRPC)
    text = str(err.value)
    assert "the ERP said no (refused: error): no product for key ***" in text
    assert "s3cret-value" not in text and adapter.sent == 1  # a refusal is not retried


def test_an_answer_that_may_have_landed_is_an_ambiguous_write_and_a_retried_query() -> None:
    rules = AnswerRules(may_have_landed="error", declared=True)
    write = Answers((200, {"error": "timeout in the ERP's queue"}))
    with pytest.raises(AmbiguousWriteError):
        conn(write).request("POST", "/o", json_body={}, idempotent=False, answer=rules)
    assert write.sent == 1  # never sent again
    query = Answers((200, {"error": "busy"}), (200, {"result": []}))
    resp = conn(query).request("POST", "/q", json_body={}, answer=rules)
    assert resp.status_code == 200 and query.sent == 2  # a query is simply asked again
    with pytest.raises(RetriableError):
        conn(Answers((200, {"error": "busy"}))).request("POST", "/q", json_body={}, answer=rules)


def test_session_expired_with_static_credentials_stops_the_run() -> None:
    from integrator.errors import AuthenticationError

    adapter = Answers((200, {"error": {"code": 100}}))
    with pytest.raises(AuthenticationError) as err:
        conn(adapter).request("POST", "/q", json_body={}, answer=JSONRPC)
    assert "a session that expired" in str(err.value) and adapter.sent == 1


SECRET_KEY = "login-key-0123456789abcdef"


@pytest.mark.parametrize(
    ("rules", "answer", "status", "outcome"),
    [
        # a rule that cannot run on a good answer: may have landed, never ok nor refused
        (AnswerRules(refused="contains(error.message, 'x')", declared=True), {"r": 1}, 200,
         Outcome.MAY_HAVE_LANDED),
        # ... on an error status: the status code decides
        (AnswerRules(refused="contains(error.message, 'x')", declared=True), {"r": 1}, 500,
         None),
        # a later rule that matches decides
        (AnswerRules(session_expired="contains(error.message, 'x')", refused="error",
                     declared=True), {"error": {"message": 7}}, 200, Outcome.REFUSED),
        # an ok rule that cannot run: not a success
        (AnswerRules(ok="length(result) > `0`", declared=True), {"result": 5}, 200,
         Outcome.MAY_HAVE_LANDED),
        # the same rules where they can be read
        (AnswerRules(refused="error && contains(error.message, 'x')", declared=True),
         {"r": 1}, 200, Outcome.OK),
    ],
)  # fmt: skip
def test_a_rule_that_cannot_be_read_on_an_answer_is_never_a_guess(
    rules: AnswerRules, answer: Any, status: int, outcome: Outcome | None
) -> None:
    verdict = rules.judge(answer, status)
    assert (verdict.outcome if verdict else None) is outcome
    if outcome is Outcome.MAY_HAVE_LANDED:
        assert verdict is not None and verdict.unreadable and "cannot be read" in verdict.rule


def test_an_unreadable_rule_never_quotes_the_answer() -> None:
    """JMESPath's own message quotes the value it met: a login answer's key."""
    rules = AnswerRules(refused="length(result.key)", id_path="to_number(result)", declared=True)
    answer = {"result": {"key": 12345678901234567890}}
    verdict = rules.judge(answer, 200)
    assert verdict is not None and "12345678901234567890" not in verdict.rule, verdict
    with pytest.raises(ValueError, match="cannot be read") as err:
        AnswerRules(id_path="length(result)", declared=True).reference({"result": 99887766})
    assert "99887766" not in str(err.value)

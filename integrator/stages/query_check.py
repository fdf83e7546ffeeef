"""query_check: ask the ERP whether it already has the order, before writing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.connectors.answers import AnswerRules, RuleUnreadable, read_rules
from integrator.connectors.bodies import answer_of
from integrator.errors import RetriableError
from integrator.mapping.paths import path_problem, select
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.stages.request import RequestTemplate, read_request
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.connectors.http import Connector
    from integrator.mapping.expr import Scope
    from integrator.pipeline.context import RunContext

__all__ = ["Answer", "QueryCheckStage"]

METHODS = {"GET", "POST", "PUT"}


def _codes(v: list[int]) -> str | None:
    ok = all(isinstance(c, int) and 100 <= c <= 599 for c in v)
    return None if ok else "expected a list of HTTP status codes such as [404]"


@dataclass(frozen=True)
class Answer:
    """What query_check learnt: found or not, the answer, the request and its status."""

    found: bool
    answer: Any
    what: str  # ``POST erp:/jsonrpc``
    status: int
    reference: str | None = None  # the answer rules' id_path, when found


class QueryCheckStage(Stage):
    """Found → the write is skipped and the ERP's answer goes to check_response."""

    name = "query_check"
    calls_out = True
    settles_ambiguous_write = True
    allowed = {
        "url",
        "method",
        "body",
        "content_type",
        "headers",
        "answer",
        "response_path",
        "response_path_value",
        "failure_status_codes",
        "not_found_status_codes",
    }

    def __init__(
        self,
        request: RequestTemplate,
        response_path: str,
        response_path_value: str | None,
        failure: set[int],
        not_found: set[int],
        rules: AnswerRules,
    ) -> None:
        self.request = request
        self.response_path, self.response_path_value = response_path, response_path_value
        self.failure, self.not_found = failure, not_found
        self.rules = rules
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """The request (URL, method, body, headers), the found test, the status code lists
        and the answer rules."""
        value = opts.data.get("response_path_value")
        failure: list[int] = opts.get("failure_status_codes", list, [], check=_codes)
        not_found: list[int] = opts.get("not_found_status_codes", list, [404], check=_codes)
        return cls(
            request=read_request(
                opts,
                url_key="url",
                url_default=None,
                methods=METHODS,
                method_default="GET",
                body_default=None,
            ),
            response_path=opts.get("response_path", str, "", required=True, check=path_problem),
            response_path_value=None if value is None else str(value),
            failure=set(failure),
            not_found=set(not_found),
            rules=read_rules(opts),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    def plan(self, ex: Exchange) -> None:
        """Trace: the query it would send; the order counts as not found."""
        run = self.run
        assert run is not None  # set by open()
        scope = run.scope(ex, run.target)
        run.plan(ex, run.target, self.request.method, self.request.render_url(scope),
                 self.request.value(scope)[0])  # fmt: skip
        ex.attributes["query_check.found"] = "false"
        run.ledger.apply(ex.track, Fact.NOT_FOUND, "trace: the ERP was not asked")

    def ask(self, conn: Connector, scope: Scope) -> Answer:
        """Ask ``conn`` whether it has the order the ``scope`` is about (reconcile asks this
        too, order by order). An answer its rules call an error raises: it is never "not
        found"."""
        req = self.request
        url = req.render_url(scope)
        what = conn.describe(req.method, conn.url(url))
        body, ctype = req.encoded(scope, what)
        resp = conn.request(
            req.method,
            url,
            body=body,
            content_type=ctype,
            headers=req.render_headers(scope),
            ok_status=frozenset(self.failure | self.not_found),
            answer=self.rules,
        )
        if resp.status_code in self.failure:
            exc = RetriableError(
                f"query_check {what} answered {resp.status_code}, listed in "
                "failure_status_codes; the order is retried on the next run",
                stage=self.name,
                status=resp.status_code,
            )
            if resp.status_code >= 500:  # the ERP, not the order: the circuit breaker counts it
                exc.connector, exc.failure = conn.name, f"{resp.status_code // 100}xx"
            raise exc
        if resp.status_code in self.not_found:
            return Answer(False, None, what, resp.status_code)
        answer = answer_of(resp, what, conn.name)
        value = select(self.response_path, answer)
        if self.response_path_value is None:
            found = value not in (None, "", [], {}, False, 0)
        else:
            found = _as_text(value) == self.response_path_value
        try:
            ref = self.rules.reference(answer) if found else None
        except RuleUnreadable:  # found all the same; check_response may give the reference
            ref = None
        return Answer(found, answer, what, resp.status_code, ref)

    def process(self, ex: Exchange) -> None:
        """Query the ERP; set ``ex.resume`` when the order is there."""
        run = self.run
        assert run is not None  # set by open()
        got = self.ask(run.target, run.scope(ex, run.target))
        ex.attributes["query_check.found"] = "true" if got.found else "false"
        if got.found:
            if got.reference is not None:
                ex.attributes["erp.id"] = got.reference
            ex.response, ex.resume = got.answer, True
            run.ledger.apply(
                ex.track,
                Fact.FOUND,
                f"found in the ERP by query_check ({got.what}); not written again",
                response=got.answer,
            )
        else:
            note = "journal said sending; " if ex.settle else ""
            run.ledger.apply(
                ex.track, Fact.NOT_FOUND, f"{note}not in the ERP ({got.what} → {got.status})"
            )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)

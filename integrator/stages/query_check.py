"""query_check: ask the ERP whether it already has the order, before writing it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.connectors.bodies import parse_answer
from integrator.errors import RetriableError
from integrator.mapping.paths import compile_path, render, render_json, select
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["QueryCheckStage"]

METHODS = {"GET", "POST", "PUT"}


def _codes(v: list[int]) -> str | None:
    ok = all(isinstance(c, int) and 100 <= c <= 599 for c in v)
    return None if ok else "expected a list of HTTP status codes such as [404]"


def _path_ok(v: str) -> str | None:
    try:
        compile_path(v)
    except ValueError as exc:
        return str(exc)
    return None


class QueryCheckStage(Stage):
    """Found → the write is skipped and the ERP's answer goes to check_response."""

    name = "query_check"
    calls_out = True
    settles_ambiguous_write = True
    allowed = {
        "url",
        "method",
        "body",
        "response_path",
        "response_path_value",
        "failure_status_codes",
        "not_found_status_codes",
    }

    def __init__(
        self,
        url: str,
        method: str,
        body: Any,
        response_path: str,
        response_path_value: str | None,
        failure: set[int],
        not_found: set[int],
    ) -> None:
        self.url, self.method, self.body = url, method, body
        self.response_path, self.response_path_value = response_path, response_path_value
        self.failure, self.not_found = failure, not_found
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """URL template, method, body template, response path and the status code lists."""
        value = opts.data.get("response_path_value")
        failure: list[int] = opts.get("failure_status_codes", list, [], check=_codes)
        not_found: list[int] = opts.get("not_found_status_codes", list, [404], check=_codes)
        return cls(
            url=opts.get("url", str, "", required=True),
            method=opts.get(
                "method",
                str,
                "GET",
                check=lambda m: (
                    None
                    if m.upper() in METHODS
                    else f"expected one of {', '.join(sorted(METHODS))}"
                ),
            ).upper(),
            body=opts.data.get("body"),
            response_path=opts.get("response_path", str, "", required=True, check=_path_ok),
            response_path_value=None if value is None else str(value),
            failure=set(failure),
            not_found=set(not_found),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    def _request(self, ex: Exchange) -> tuple[str, Any]:
        return (
            render(self.url, ex.order, ex.attributes, url=True),
            None if self.body is None else render_json(self.body, ex.order, ex.attributes),
        )

    def plan(self, ex: Exchange) -> None:
        """Trace: the query it would send; the order counts as not found."""
        run = self.run
        assert run is not None  # set by open()
        url, body = self._request(ex)
        run.plan(ex, run.target, self.method, url, body)
        ex.attributes["query_check.found"] = "false"
        run.ledger.apply(ex.track, Fact.NOT_FOUND, "trace: the ERP was not asked")

    def process(self, ex: Exchange) -> None:
        """Query the ERP; set ``ex.resume`` when the order is there."""
        run = self.run
        assert run is not None  # set by open()
        url, body = self._request(ex)
        conn = run.target
        resp = conn.request(
            self.method, url, json_body=body, ok_status=frozenset(self.failure | self.not_found)
        )
        what = conn.describe(self.method, conn.url(url))
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
        found = False
        answer: Any = None
        if resp.status_code not in self.not_found:
            answer = parse_answer(resp, what, conn.name)
            value = select(self.response_path, answer)
            if self.response_path_value is None:
                found = value not in (None, "", [], {}, False, 0)
            else:
                found = _as_text(value) == self.response_path_value
        ex.attributes["query_check.found"] = "true" if found else "false"
        if found:
            ex.response, ex.resume = answer, True
            run.ledger.apply(
                ex.track,
                Fact.FOUND,
                f"found in the ERP by query_check ({what}); not written again",
                response=answer,
            )
        else:
            note = "journal said sending; " if ex.settle else ""
            run.ledger.apply(
                ex.track, Fact.NOT_FOUND, f"{note}not in the ERP ({what} → {resp.status_code})"
            )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)

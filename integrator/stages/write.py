"""write: send the order to the ERP, with the ledger's `sending` → `sent` around the call."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.connectors.answers import NO_RULES, AnswerRules, RuleUnreadable, read_rules
from integrator.connectors.bodies import answer_of
from integrator.errors import PermanentError, UnreadableAnswer
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.stages.request import RequestTemplate, read_request
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["WriteStage", "idempotency_key"]


def idempotency_key(flow: str, number: str) -> str:
    """A stable key per (flow, order): a retried write carries the same one."""
    return hashlib.sha256(f"{flow}\0{number}".encode()).hexdigest()[:32]


class WriteStage(Stage):
    """2xx (and the answer rules' ok) = written. The answer (merged over the request body)
    becomes the data."""

    name = "write"
    allowed = {
        "path",
        "method",
        "body",
        "content_type",
        "headers",
        "answer",
        "idempotency_header",
        "idempotent",
    }
    writes = True
    delivers = True
    side_effects = True
    calls_out = True

    def __init__(
        self,
        request: RequestTemplate,
        idempotency_header: str = "",
        idempotent: bool = False,
        rules: AnswerRules = NO_RULES,
    ) -> None:
        self.request, self.idempotency_header, self.rules = request, idempotency_header, rules
        # A repeat is harmless: the request carries an idempotency key, or it sets state
        # (``idempotent: true``, e.g. a status PATCH), so an ambiguous write is simply resent.
        self.repeatable = bool(idempotency_header) or idempotent
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """The request (path, method, body, headers), idempotency, and the answer rules."""
        return cls(
            request=read_request(
                opts,
                url_key="path",
                url_default="/api/orders/",
                methods={"POST", "PUT", "PATCH"},
                method_default="POST",
                body_default="${data}",
            ),
            idempotency_header=opts.get("idempotency_header", str, ""),
            idempotent=opts.get("idempotent", bool, False),
            rules=read_rules(opts),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    def plan(self, ex: Exchange) -> None:
        """Dry run: record the request."""
        run = self.run
        assert run is not None  # set by open()
        scope = run.scope(ex, run.target)
        run.plan(ex, run.target, self.request.method, self.request.render_url(scope),
                 self.request.value(scope)[0])  # fmt: skip

    def accept(self, ex: Exchange, answer: Any, status: int) -> None:
        """Take the ERP's answer: it becomes the response, merged over the request as data."""
        ex.response = {} if answer is None else answer
        if isinstance(ex.request, dict) and isinstance(ex.response, dict):
            ex.data = {**ex.request, **ex.response}
        else:
            ex.data = ex.response
        ex.attributes["write.status"] = str(status)
        self.resumed(ex)

    def resumed(self, ex: Exchange) -> None:
        """The answer rules' ``id_path``: the order's ERP reference (attribute ``erp.id``),
        from a fresh answer or the stored one."""
        try:
            ref = self.rules.reference(ex.response)
        except RuleUnreadable as exc:  # the write landed all the same: say why there is no ref
            ex.attributes["log.erp.id"] = str(exc)
            return
        if ref is not None:
            ex.attributes["erp.id"] = ref

    def process(self, ex: Exchange) -> None:
        """Report the write's start, write, report its answer (the ledger records `sending`
        before the call and `sent` after it; a failure is classified by the runner)."""
        run = self.run
        assert run is not None  # set by open()
        conn, req = run.target, self.request
        scope = run.scope(ex, conn)
        path = req.render_url(scope)
        headers = req.render_headers(scope)
        if self.idempotency_header:
            headers[self.idempotency_header] = idempotency_key(run.flow.name, ex.number)
        # Rendered and checked before `sending` is recorded: a template without its value, or a
        # body JSON cannot carry (NaN, a set, bytes), fails the order here, charged like a
        # mapping error, and nothing is sent.
        what = conn.describe(req.method, conn.url(path))
        body, ctype = req.encoded(scope, what)
        ex.request = ex.data
        ex.settle = False  # an earlier ambiguous write is settled: this is a new one
        run.ledger.apply(
            ex.track, Fact.WRITE_STARTED, f"{req.method} {conn.name}:{path}", request=ex.request
        )
        resp = conn.request(
            req.method,
            path,
            body=body,
            content_type=ctype,
            idempotent=False,
            retry_unsafe=self.repeatable,  # a key, or a state-setting write: a repeat is harmless
            headers=headers,
            answer=self.rules,
        )
        try:
            answer: Any = answer_of(resp, what, conn.name)
        except UnreadableAnswer as exc:
            # 2xx: the ERP took the order; its answer is unusable. Record it as sent, so it is
            # never written again, and fail the order for a person to look at.
            self.accept(ex, {"unreadable_answer": str(exc)}, resp.status_code)
            run.ledger.apply(
                ex.track,
                Fact.WRITE_ANSWERED,
                f"{conn.name} answered {resp.status_code}",
                response=ex.response,
            )
            raise PermanentError(
                f"{exc}; the ERP accepted the write, so it is not repeated: check the order in "
                "the ERP, then `integrator resolve NUMBER --as-sent --response FILE`",
                stage=self.name,
            ) from None
        self.accept(ex, answer, resp.status_code)
        ref = ex.attributes.get("erp.id") if self.rules.id_path else None
        run.ledger.apply(
            ex.track,
            Fact.WRITE_ANSWERED,
            f"{conn.name} answered {resp.status_code}" + (f": ERP reference {ref}" if ref else ""),
            response=ex.response,
        )

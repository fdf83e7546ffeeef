"""write: send the order to the ERP, with the ledger's `sending` → `sent` around the call."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.connectors.bodies import json_bytes, parse_answer
from integrator.errors import PermanentError, UnreadableAnswer
from integrator.mapping.paths import render
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.state.ledger import Fact

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["WriteStage", "idempotency_key"]


def idempotency_key(flow: str, number: str) -> str:
    """A stable key per (flow, order): a retried write carries the same one."""
    return hashlib.sha256(f"{flow}\0{number}".encode()).hexdigest()[:32]


class WriteStage(Stage):
    """2xx = written. The answer (merged over the request body) becomes the data."""

    name = "write"
    allowed = {"path", "method", "idempotency_header", "idempotent"}
    writes = True
    delivers = True
    side_effects = True
    calls_out = True

    def __init__(
        self, path: str, method: str, idempotency_header: str, idempotent: bool = False
    ) -> None:
        self.path, self.method, self.idempotency_header = path, method, idempotency_header
        # A repeat is harmless: the request carries an idempotency key, or it sets state
        # (``idempotent: true``, e.g. a status PATCH), so an ambiguous write is simply resent.
        self.repeatable = bool(idempotency_header) or idempotent
        self.run: RunContext | None = None

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """URL path (a template), method, optional idempotency header."""
        return cls(
            path=opts.get("path", str, "/api/orders/"),
            method=opts.get(
                "method",
                str,
                "POST",
                check=lambda m: (
                    None if m.upper() in {"POST", "PUT", "PATCH"} else "expected POST, PUT or PATCH"
                ),
            ).upper(),
            idempotency_header=opts.get("idempotency_header", str, ""),
            idempotent=opts.get("idempotent", bool, False),
        )

    def open(self, run: RunContext) -> None:
        """Keep the run."""
        self.run = run

    def plan(self, ex: Exchange) -> None:
        """Dry run: record the request."""
        assert self.run is not None  # set by open()
        self.run.plan(
            ex,
            self.run.target,
            self.method,
            render(self.path, ex.order, ex.attributes, url=True),
            ex.data,
        )

    def accept(self, ex: Exchange, answer: Any, status: int) -> None:
        """Take the ERP's answer: it becomes the response, merged over the request as data."""
        ex.response = {} if answer is None else answer
        if isinstance(ex.request, dict) and isinstance(ex.response, dict):
            ex.data = {**ex.request, **ex.response}
        else:
            ex.data = ex.response
        ex.attributes["write.status"] = str(status)

    def process(self, ex: Exchange) -> None:
        """Report the write's start, write, report its answer (the ledger records `sending`
        before the call and `sent` after it; a failure is classified by the runner)."""
        run = self.run
        assert run is not None  # set by open()
        conn = run.target
        path = render(self.path, ex.order, ex.attributes, url=True)
        headers: dict[str, str] = {}
        if self.idempotency_header:
            headers[self.idempotency_header] = idempotency_key(run.flow.name, ex.number)
        # Checked before `sending` is recorded: a body JSON cannot carry (NaN, a set, bytes)
        # fails the order here, charged like a mapping error, and nothing is sent.
        what = conn.describe(self.method, conn.url(path))
        body = json_bytes(ex.data, what) if ex.data is not None else None
        ex.request = ex.data
        ex.settle = False  # an earlier ambiguous write is settled: this is a new one
        run.ledger.apply(
            ex.track, Fact.WRITE_STARTED, f"{self.method} {conn.name}:{path}", request=ex.request
        )
        resp = conn.request(
            self.method,
            path,
            body=body,
            idempotent=False,
            retry_unsafe=self.repeatable,  # a key, or a state-setting write: a repeat is harmless
            headers=headers,
        )
        try:
            answer: Any = parse_answer(resp, what)
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
        run.ledger.apply(
            ex.track,
            Fact.WRITE_ANSWERED,
            f"{conn.name} answered {resp.status_code}",
            response=ex.response,
        )

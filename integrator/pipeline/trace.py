"""One recorded order through a flow, in the real runner's trace mode; and the recording of
a live order (``integrator orders export``).

Trace mode (``Mode.TRACE``) runs the flow's own stages with the engine's rules: stages that
call out or have side effects are planned, never run (their requests are listed), the write
takes a recorded answer (or the caller's default) with its status code, and nothing is read
from or written to the state store. No list of stage names: the stages' capabilities decide.
``test-flow`` and the golden tests use it; they need no credentials and leave every server
untouched.

``export_order`` is the other way round: the flow's source stage reads one order live, as a
run reads it (``lookup`` then ``fetch``: detail, items and discounts assembled, channel.conf
masked), with nothing written anywhere, and the document comes back masked by the redactor:
what ``test-flow`` and the golden cases take.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integrator.connectors.redact import Redactor, known_secrets
from integrator.errors import FatalError, OrderError
from integrator.pipeline.context import Mode, PlannedRequest, RunContext
from integrator.pipeline.exchange import LOG_PREFIX, Exchange
from integrator.pipeline.project import BuiltFlow, Project, connector_for, policy_for
from integrator.pipeline.runner import Runner
from integrator.pipeline.stage import SourceStage, Stage
from integrator.scripting.pool import ScriptPool
from integrator.state.ledger import Ledger

__all__ = [
    "FlowTrace",
    "GoldenCase",
    "StageTrace",
    "export_order",
    "find_golden",
    "grouped",
    "json_diff",
    "recording",
    "sandbox_answer",
    "trace_flow",
]

# A default answer for the write, from the request it got (the caller's: the sandbox's shape).
Answer = Callable[[Any], Any]
SANDBOX_ERP_ID = "ERP-TEST-0000001"
RECORDING_KEYS = frozenset({"status", "body"})


def sandbox_answer(request: Any) -> Any:
    """What the sandbox ERP answers to a create (the write's answer when none is recorded)."""
    from integrator.sandbox.erp import create_answer

    return create_answer(request if isinstance(request, dict) else {}, SANDBOX_ERP_ID)


def recording(value: Any) -> tuple[Any, int | None]:
    """A recorded answer: ``{"status": 201, "body": {...}}`` (exactly those two keys, the
    status an integer) is the body with its status code; anything else is the body alone
    (status None). An ERP whose own answer has exactly those two keys is recorded wrapped."""
    if isinstance(value, dict) and set(value) == RECORDING_KEYS:
        status = value["status"]
        if isinstance(status, int) and not isinstance(status, bool):
            return value["body"], status
    return value, None


def grouped(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    """Attributes in two groups: ``log`` (the ``log.`` ones, which runs record) and ``other``
    (the rest: the engine's, the stages', the scripts'), each in the order they were set."""
    return {
        "log": {k: v for k, v in attributes.items() if k.startswith(LOG_PREFIX)},
        "other": {k: v for k, v in attributes.items() if not k.startswith(LOG_PREFIX)},
    }


@dataclass
class StageTrace:
    """One stage's effect on the order."""

    stage: str
    output: Any = None
    attributes: dict[str, str] = field(default_factory=dict)
    planned: list[dict[str, Any]] = field(default_factory=list)  # requests it would send
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For printing."""
        out: dict[str, Any] = {"stage": self.stage}
        if self.planned:
            out["would_send"] = self.planned
        else:
            out["output"] = self.output
        out["attributes"] = self.attributes
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class FlowTrace:
    """What the flow would do with one order."""

    stages: list[StageTrace] = field(default_factory=list)
    request: Any = None  # the body the write would send
    response: Any = None
    mapping_data: Any = None
    attributes: dict[str, str] = field(default_factory=dict)  # every attribute at the end
    state: str = ""  # the ledger's state for the order at the end
    error: str | None = None
    failed_stage: str | None = None  # the stage that failed (the source's: reading it)
    failed_attributes: dict[str, str] | None = None  # every attribute when it failed
    redactor: Redactor | None = field(default=None, repr=False)  # masks what is printed

    def as_dict(self) -> dict[str, Any]:
        """For printing: masked (the fields keep what the flow made, for golden tests).
        ``attributes``: every attribute at the end, grouped (``grouped``); ``failure``: the
        stage that failed, its error and every attribute up to there (None when none did)."""
        failure = None
        if self.error is not None:
            at = self.failed_attributes if self.failed_attributes is not None else self.attributes
            failure = {"stage": self.failed_stage, "error": self.error, "attributes": grouped(at)}
        out = {
            "stages": [s.as_dict() for s in self.stages],
            "erp_request": self.request,
            "erp_response": self.response,
            "mapping_data": self.mapping_data,
            "attributes": grouped(self.attributes),
            "state": self.state,
            "failure": failure,
            "error": self.error,
        }
        return out if self.redactor is None else dict(self.redactor.redact(out))


def _snapshot(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _planned(p: PlannedRequest) -> dict[str, Any]:
    return {"connector": p.connector, "method": p.method, "url": p.url, "body": p.body}


def trace_flow(
    project: Project,
    built: BuiltFlow,
    order: dict[str, Any],
    attributes: dict[str, str] | None = None,
    response: Any = None,
    *,
    status: int = 201,
    answer: Answer | None = None,
) -> FlowTrace:
    """Run ``order`` through ``built`` in trace mode. The write's answer: ``response`` with
    ``status`` (recorded), else ``answer(request)``, else an empty object. A status that is
    not 2xx fails the write as the connector fails a real one (the same error class, so the
    ledger classifies it alike: refused, or may have landed)."""
    app, flow = project.app, built.config
    redactor = Redactor(known_secrets(app))

    writer = next((s for s in built.stages if s.writes), None)

    def answer_for(ex: Exchange) -> tuple[Any, int]:
        if response is not None or not 200 <= status < 300:  # never the default's success
            return _recorded_answer(run, writer, response, status), status
        return (answer(ex.request) if answer is not None else {}), status

    run = RunContext(
        app=app,
        flow=flow,
        store=None,
        redactor=redactor,
        source=connector_for(app, flow.source, redactor, 2),
        target=connector_for(app, flow.target, redactor, 2),
        ledger=Ledger(None, flow.name, policy_for(app, built), redactor),
        mode=Mode.TRACE,
        scripts=ScriptPool(size=1, memory_mb=flow.script_memory_mb),
        trace_answer=answer_for,
    )
    trace = FlowTrace(redactor=redactor)
    seen = 0
    mapping: list[Any] = [None]  # the mapping data as the last stage left it
    observed: list[Stage] = []

    def observe(stage: Stage, ex: Exchange, before: dict[str, str], exc: OrderError | None) -> None:
        nonlocal seen
        observed.append(stage)
        planned = [_planned(p) for p in run.planned[seen:]]
        seen = len(run.planned)
        changed = {k: v for k, v in ex.attributes.items() if before.get(k) != v}
        # A stage's output: the mapping data when it made some (check_response), else the data.
        made_mapping = ex.mapping_data is not mapping[0]
        mapping[0] = ex.mapping_data
        output = ex.mapping_data if made_mapping else ex.data
        trace.stages.append(
            StageTrace(
                stage.name,
                None if planned else _snapshot(output),
                changed,
                planned,
                f"{exc.stage or stage.name}: {exc}" if exc else None,
            )
        )
        if exc is not None and trace.failed_stage is None:  # the first: run_on_failure come after
            trace.failed_stage = exc.stage or stage.name
            trace.failed_attributes = dict(ex.attributes)
        if stage.writes:
            trace.request, trace.response = _snapshot(ex.request), _snapshot(ex.response)
        if ex.mapping_data is not None:
            trace.mapping_data = _snapshot(ex.mapping_data)

    runner = Runner(
        built.stages, run, records=[(_snapshot(order), attributes or {})], on_stage=observe
    )
    try:
        with run.connectors_open():
            result = runner.execute()
    finally:
        run.scripts.close()
    ex = runner.traced[0] if runner.traced else None
    if ex is not None:
        trace.attributes = dict(ex.attributes)
        trace.state = ex.state.value
    trace.error = result.error or (result.failures[0].message if result.failures else None)
    if trace.error is not None and trace.failed_stage is None:
        # Not an order's failure (a bug in a stage, a run-stopping error): the stage after
        # the last one seen, or the source when the order never reached a stage.
        trace.failed_stage = _next_stage(runner, observed, ex)
    return trace


def _next_stage(runner: Runner, observed: list[Stage], ex: Exchange | None) -> str:
    """The stage that ran after the last one observed (stages before the write are skipped
    once the ERP has the order)."""
    if ex is None:
        return runner.source.name
    stages = runner.order_stages
    last = stages.index(observed[-1]) if observed else -1
    for i in range(last + 1, len(stages)):
        if not (ex.resume and i <= runner.write_index):
            return stages[i].name
    return runner.source.name if last < 0 else stages[last].name


def _recorded_answer(run: RunContext, writer: Stage | None, body: Any, status: int) -> Any:
    """A recorded answer read as the target connector reads a real one: the write stage's
    answer rules judge it (a JSON-RPC error, a SOAP Fault), a status that is not 2xx is the
    connector's error class for it; what it raises fails the write as in a run (the ledger
    classifies it: refused, or may have landed). Returns the answer as the write gets it."""
    import contextlib

    import requests

    from integrator.connectors.answers import AnswerRules
    from integrator.connectors.bodies import answer_of
    from integrator.errors import UnreadableAnswer

    resp = requests.Response()
    resp.status_code = status
    if body is None:
        text, kind = "", "application/json"
    elif isinstance(body, str):  # a text answer (XML in a JSON string): as the wire brings it
        text = body
        kind = "text/xml; charset=utf-8" if body.lstrip().startswith("<") else "text/plain"
    else:
        text, kind = json.dumps(body, ensure_ascii=False, default=str), "application/json"
    resp._content = text.encode()  # the recorded body, as the wire would have brought it
    resp.headers["Content-Type"] = kind
    conn = run.target
    planned = run.planned[-1] if run.planned else None  # the write's request, just planned
    method, url = (planned.method, planned.url) if planned else ("POST", conn.url("/"))
    what = conn.describe(method, url) + " (recorded answer)"
    rules = getattr(writer, "rules", None)
    ok = 200 <= status < 300
    if isinstance(rules, AnswerRules) and (ok or resp.content):
        # the connector's own reading of an answer (a 2xx it cannot read is left to the write;
        # an error page the rules cannot read is left to the status code)
        with contextlib.suppress(UnreadableAnswer):
            conn.judge(method, url, resp, rules)
    if not ok:
        raise conn.status_error(what, resp)
    try:
        return answer_of(resp, what, conn.name)
    except UnreadableAnswer:
        return body


def export_order(project: Project, built: BuiltFlow, number: str) -> dict[str, Any] | None:
    """Order ``number`` read live from the flow's source as a run reads it (its source stage's
    ``lookup`` and ``fetch``, channel.conf masked), the whole document masked by the redactor
    (the configuration's secrets, the login's credential, channel.conf's values). None: the
    source has no such order. Nothing is written: no store, no run log; only the source is
    called (its login included). A failure of the source is a FatalError naming the order."""
    app, flow = project.app, built.config
    redactor = Redactor(known_secrets(app))
    stage = next(s for s in built.stages if isinstance(s, SourceStage))
    source = connector_for(app, flow.source, redactor, 8)
    run = RunContext(
        app=app,
        flow=flow,
        store=None,
        redactor=redactor,
        source=source,
        # never called here; a source that compares both sides (a stock snapshot) reads it
        target=source
        if flow.target == flow.source
        else connector_for(app, flow.target, redactor, 8),
        ledger=Ledger(None, flow.name, policy_for(app, built), redactor),
        mode=Mode.DRY_RUN,
    )
    run.fetch_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"{flow.name}-export")
    try:
        with run.connectors_open():
            stage.open(run)
            try:
                run.source.login()  # as the login stage does, on the source alone
                ref = stage.lookup(run, number)
                ex = stage.fetch(ref) if ref is not None else None
            finally:
                stage.close()  # a dry run: no watermark moves
    except (OrderError, FatalError) as exc:
        raise FatalError(
            f"order {number} from {flow.source} (flow {flow.name}): {redactor.scrub(str(exc))}"
        ) from None
    finally:
        run.fetch_pool.shutdown()
        run.scripts.close()
    if ex is None:
        return None
    doc: dict[str, Any] = redactor.redact(_snapshot(ex.order))
    return doc


@dataclass(frozen=True)
class GoldenCase:
    """``flows/tests/<flow>/<case>.order.json`` and its ``<case>.expected.json``."""

    flow: str
    name: str
    order_file: Path
    expected_file: Path


def find_golden(flows_dir: Path, flow: str | None = None) -> list[GoldenCase]:
    """Every golden case under ``flows/tests/`` (of one flow when named)."""
    root = flows_dir / "tests"
    cases = []
    for order_file in sorted(root.glob("*/*.order.json")):
        name = order_file.name[: -len(".order.json")]
        if flow is None or order_file.parent.name == flow:
            cases.append(
                GoldenCase(
                    order_file.parent.name,
                    name,
                    order_file,
                    order_file.with_name(f"{name}.expected.json"),
                )
            )
    return cases


def json_diff(expected: Any, actual: Any, label: str) -> list[str]:
    """A unified diff of two JSON documents (keys sorted); empty when equal."""

    def lines(v: Any) -> list[str]:
        return json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return list(
        difflib.unified_diff(
            lines(expected), lines(actual), f"{label} (expected)", f"{label} (actual)", lineterm=""
        )
    )

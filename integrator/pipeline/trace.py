"""One recorded order through a flow, in the real runner's trace mode.

Trace mode (``Mode.TRACE``) runs the flow's own stages with the engine's rules: stages that
call out or have side effects are planned, never run (their requests are listed), the write
takes a recorded answer (or the caller's default), and nothing is read from or written to the
state store. No list of stage names: the stages' capabilities decide. ``test-flow`` and the
golden tests use it; they need no credentials and leave every server untouched.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integrator.connectors.redact import Redactor, known_secrets
from integrator.errors import OrderError
from integrator.pipeline.context import Mode, PlannedRequest, RunContext
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.project import BuiltFlow, Project, connector_for, policy_for
from integrator.pipeline.runner import Runner
from integrator.pipeline.stage import Stage
from integrator.scripting.pool import ScriptPool
from integrator.state.ledger import Ledger

__all__ = ["FlowTrace", "GoldenCase", "StageTrace", "find_golden", "json_diff", "trace_flow"]

# A default answer for the write, from the request it got (the caller's: the sandbox's shape).
Answer = Callable[[Any], Any]


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
    redactor: Redactor | None = field(default=None, repr=False)  # masks what is printed

    def as_dict(self) -> dict[str, Any]:
        """For printing: masked (the fields keep what the flow made, for golden tests)."""
        out = {
            "stages": [s.as_dict() for s in self.stages],
            "erp_request": self.request,
            "erp_response": self.response,
            "mapping_data": self.mapping_data,
            "attributes": self.attributes,
            "state": self.state,
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
    ``status`` (recorded), else ``answer(request)``, else an empty object."""
    app, flow = project.app, built.config
    redactor = Redactor(known_secrets(app))

    def answer_for(ex: Exchange) -> tuple[Any, int]:
        if response is not None:
            return response, status
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

    def observe(stage: Stage, ex: Exchange, before: dict[str, str], exc: OrderError | None) -> None:
        nonlocal seen
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
    if runner.traced:
        ex = runner.traced[0]
        trace.attributes = dict(ex.attributes)
        trace.state = ex.state.value
    trace.error = result.error or (result.failures[0].message if result.failures else None)
    return trace


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

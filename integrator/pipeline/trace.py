"""One recorded order through a flow's pure stages, calling nothing and writing nothing.

``trace_flow`` runs script → mapping → (a recorded or the sandbox ERP's answer) →
check_response, and records each stage's output and the attributes it changed. Stages that
talk to Omnitron or the ERP (login, read, query_check, mark_sent) and post_script (it may do
anything) are listed as skipped. Golden tests compare the write's request body with a stored
expectation.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integrator.connectors.redact import Redactor, strip_channel_conf
from integrator.errors import OrderError
from integrator.pipeline.context import RunContext
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.project import BuiltFlow, Project, connector_for
from integrator.pipeline.stage import SourceStage
from integrator.sandbox.erp import create_answer
from integrator.scripting.pool import ScriptPool
from integrator.stages.write import WriteStage
from integrator.state.store import Store

__all__ = ["FlowTrace", "GoldenCase", "StageTrace", "find_golden", "json_diff", "trace_flow"]

TALKS = {"login": "calls Omnitron", "query_check": "calls the ERP", "mark_sent": "calls Omnitron"}
SANDBOX_ERP_ID = "ERP-TEST-0000001"


@dataclass
class StageTrace:
    """One stage's effect on the order."""

    stage: str
    output: Any = None
    attributes: dict[str, str] = field(default_factory=dict)
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        """For printing."""
        if self.skipped:
            return {"stage": self.stage, "skipped": self.skipped}
        return {"stage": self.stage, "output": self.output, "attributes": self.attributes}


@dataclass
class FlowTrace:
    """What the flow would do with one order."""

    stages: list[StageTrace] = field(default_factory=list)
    request: Any = None  # the body the write would send
    response: Any = None
    mapping_data: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For printing."""
        return {
            "stages": [s.as_dict() for s in self.stages],
            "erp_request": self.request,
            "erp_response": self.response,
            "mapping_data": self.mapping_data,
            "error": self.error,
        }


def _snapshot(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def trace_flow(
    project: Project,
    built: BuiltFlow,
    order: dict[str, Any],
    attributes: dict[str, str] | None = None,
    response: Any = None,
) -> FlowTrace:
    """Run ``order`` through ``built``'s pure stages; ``response``: the ERP's recorded answer
    (default: what the sandbox ERP would answer)."""
    app, flow = project.app, built.config
    redactor = Redactor(app.secrets)
    store = Store("sqlite://")  # in memory, and never written: the run is a dry run
    run = RunContext(
        app=app,
        flow=flow,
        store=store,
        redactor=redactor,
        source=connector_for(app, flow.source, redactor, 2),
        target=connector_for(app, flow.target, redactor, 2),
        dry_run=True,
        scripts=ScriptPool(size=1, memory_mb=flow.script_memory_mb),
    )
    number, pk = str(order.get("number", "")), str(order.get("pk", ""))
    doc = _snapshot(order)
    strip_channel_conf(doc, redactor)  # as the read stage does: a recorded order may carry it
    ex = Exchange(pk, number, doc)
    ex.attributes.update(
        {"order.number": number, "order.pk": pk, "flow.name": flow.name, "run.id": "0"}
    )
    ex.attributes.update(attributes or {})
    trace = FlowTrace()
    try:
        for stage in built.stages:
            if isinstance(stage, SourceStage):
                trace.stages.append(StageTrace(stage.name, skipped="reads Omnitron"))
                continue
            if stage.name in TALKS or stage.name == "post_script":
                why = TALKS.get(stage.name, "may have side effects: use test-script for it")
                trace.stages.append(StageTrace(stage.name, skipped=why))
                continue
            before = dict(ex.attributes)
            stage.open(run)
            try:
                if stage.writes:
                    ex.request = _snapshot(ex.data)
                    trace.request = ex.request
                    answer = (
                        response
                        if response is not None
                        else create_answer(
                            ex.request if isinstance(ex.request, dict) else {}, SANDBOX_ERP_ID
                        )
                    )
                    WriteStage.accept(ex, answer, 201)
                    trace.response = ex.response
                else:
                    stage.process(ex)
            except OrderError as exc:
                exc.stage = exc.stage or stage.name
                raise
            finally:
                stage.close()
            changed = {k: v for k, v in ex.attributes.items() if before.get(k) != v}
            output = ex.mapping_data if stage.name == "check_response" else ex.data
            trace.stages.append(StageTrace(stage.name, _snapshot(output), changed))
            if stage.name == "check_response":
                trace.mapping_data = _snapshot(ex.mapping_data)
    except OrderError as exc:
        trace.error = f"{exc.stage or '?'}: {exc}"
        changed = {k: v for k, v in ex.attributes.items() if k.startswith("log.")}
        trace.stages.append(StageTrace(exc.stage or "?", None, changed))
    finally:
        run.scripts.close()
        store.close()
        run.source.close()
        run.target.close()
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

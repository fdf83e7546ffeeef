"""The workbench's core, shared by ``integrator test-script`` / ``test-flow --golden`` and the
console's workbench: one script call as the flow makes it, one stage of a flow on an input,
and the golden cases' status.

Nothing here calls out or writes to the store: scripts run in a script pool of their own
(isolated workers with the time and memory limits), a mapping is the flow's own stage, and a
whole flow goes through ``trace.trace_flow`` (the runner's trace mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrator.config.yamlfile import decode_utf8
from integrator.connectors.redact import Redactor, strip_channel_conf
from integrator.errors import ConfigIssue, ConfigurationError, OrderError, PermanentError
from integrator.pipeline.exchange import Exchange, var_attributes
from integrator.scripting import SCRIPT_ERROR, ScriptPool
from integrator.scripting.pool import DEFAULT_MEMORY_MB

if TYPE_CHECKING:
    from integrator.pipeline.project import BuiltFlow, Project
    from integrator.scripting.native import Script

__all__ = [
    "GoldenResult",
    "ScriptRun",
    "StageRun",
    "cap_script_time",
    "golden",
    "read_json",
    "run_script",
    "run_stage",
    "script_args",
    "testable_stages",
]

SCRIPT_STAGES = ("script", "post_script")
TESTABLE = (*SCRIPT_STAGES, "mapping")


def read_json(path: Path, what: str) -> Any:
    """A JSON file, or a ConfigurationError naming the file, line and column."""
    try:
        text, problem = decode_utf8(path.read_bytes(), str(path))
        if problem is not None:
            raise ConfigurationError([ConfigIssue(str(path), what, problem.message, problem.line)])
        return json.loads(text or "")
    except OSError as exc:
        raise ConfigurationError(
            [ConfigIssue(str(path), what, f"cannot read {path}: {exc.strerror}")]
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            [
                ConfigIssue(
                    str(path),
                    what,
                    f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                    line=exc.lineno,
                )
            ]
        ) from None


# ----------------------------------------------------------------- scripts
@dataclass
class ScriptRun:
    """One script call: its result and the attributes it set or changed."""

    runtime: str
    result_data: Any
    attributes: dict[str, str]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "result_data": self.result_data,
            "attributes": self.attributes,
        }


def script_args(
    step: str, order: Any = None, request: Any = None, response: Any = None
) -> dict[str, Any]:
    """The arguments the flow gives a script of ``step``: ``check_response`` gets the request
    and the answer (and the order when given); the others the order as data, its channel.conf
    masked as the read stage masks it."""
    args: dict[str, Any] = {}
    if step == "check_response":
        args["request"], args["response"] = request, response
        if order is not None:
            args["order"] = order
    else:
        args["data"] = args["order"] = order
        if isinstance(order, dict):
            strip_channel_conf(order, Redactor([]))
    return args


def run_script(
    script: Script,
    attributes: dict[str, str],
    args: dict[str, Any],
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> ScriptRun:
    """Call ``script`` once as the flow calls it: in a fresh isolated worker (the pool's
    time and memory limits), with the arguments it declares. A failing script is a result
    (``error``: its ``log.script.error``), not an exception."""
    before = dict(attributes)
    current = dict(attributes)
    pool = ScriptPool(size=1, memory_mb=memory_mb)
    result: Any = None
    raw: str | None = None
    failed = False
    try:
        result, raw = script.run(pool, current, **args)
    except PermanentError:
        failed = True  # log.script.error is in the attributes
    finally:
        pool.close()
    written = {k: v for k, v in current.items() if before.get(k) != v}
    return ScriptRun(
        script.runtime,
        raw if raw is not None else result,
        written,
        written.get(SCRIPT_ERROR, "the script failed") if failed else None,
    )


def cap_script_time(built: BuiltFlow, seconds: float) -> None:
    """Give every script of ``built`` at most ``seconds`` per call (the console's workbench:
    a stage's limit may be minutes). Only for a BuiltFlow of one's own, loaded for this."""
    for stage in built.stages:
        script: Script | None = getattr(stage, "script", None)
        if script is not None:
            script.timeout = min(script.timeout, seconds)


# ------------------------------------------------------------------ stages
def testable_stages(built: BuiltFlow) -> list[dict[str, Any]]:
    """The stages a workbench can run alone: scripts and mappings, by their index."""
    out = []
    for index, stage in enumerate(built.stages):
        if stage.name in TESTABLE:
            out.append({"index": index, "stage": stage.name, **stage.describe()})
    return out


@dataclass
class StageRun:
    """One stage of a flow run alone on an input."""

    stage: str
    kind: str  # script or mapping
    result_data: Any = None
    attributes: dict[str, str] = field(default_factory=dict)
    runtime: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "kind": self.kind,
            "result_data": self.result_data,
            "attributes": self.attributes,
        }
        if self.runtime is not None:
            out["runtime"] = self.runtime
        if self.error is not None:
            out["error"] = self.error
        return out


def run_stage(
    built: BuiltFlow, index: int, order: Any, attributes: dict[str, str] | None = None
) -> StageRun:
    """Stage ``index`` of ``built`` (a script or a mapping) on ``order``, with the flow's
    constants as ``vars.`` attributes under ``attributes``, as a run gives them."""
    flow = built.config
    if not 0 <= index < len(built.stages) or built.stages[index].name not in TESTABLE:
        raise ValueError(f"stage {index} of {flow.name} is not a script or a mapping")
    stage = built.stages[index]
    attrs = {**var_attributes(flow.vars), **(attributes or {})}
    if stage.name in SCRIPT_STAGES:
        script: Script | None = getattr(stage, "script", None)
        if script is None:
            raise ValueError(f"stage {index} of {flow.name} has no script")
        ran = run_script(script, attrs, script_args("script", order), flow.script_memory_mb)
        return StageRun(stage.name, "script", ran.result_data, ran.attributes, ran.runtime,
                        ran.error)  # fmt: skip
    # the mapping: the flow's own stage, on an exchange of its own
    ex = Exchange(pk="", number=str(_number(order)), order=order if isinstance(order, dict)
                  else {}, data=order, attributes=dict(attrs))  # fmt: skip
    before = dict(ex.attributes)
    try:
        stage.process(ex)
    except OrderError as exc:
        return StageRun(stage.name, "mapping", None, {}, None, str(exc))
    written = {k: v for k, v in ex.attributes.items() if before.get(k) != v}
    return StageRun(stage.name, "mapping", ex.data, written)


def _number(order: Any) -> Any:
    return order.get("number", "") if isinstance(order, dict) else ""


# ------------------------------------------------------------------ golden
@dataclass
class GoldenResult:
    """One golden case: ok, fail (``detail`` says why: an error, a missing file, a diff)
    or updated."""

    flow: str
    case: str
    status: str
    reason: str = ""
    diff: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "case": self.case,
            "status": self.status,
            "reason": self.reason,
            "diff": self.diff,
        }


def golden(project: Project, flow: str | None = None, update: bool = False) -> list[GoldenResult]:
    """Every golden case (of ``flow`` when named) through its flow in trace mode; ``update``
    rewrites the expected payloads. No cases: an empty list."""
    from integrator.pipeline.trace import find_golden, json_diff, sandbox_answer, trace_flow

    results = []
    for case in find_golden(project.app.flows_dir, flow):
        built = project.flows.get(case.flow)
        if built is None:
            results.append(GoldenResult(case.flow, case.name, "fail",
                                        f"no valid flow named {case.flow!r}"))  # fmt: skip
            continue
        trace = trace_flow(
            project, built, read_json(case.order_file, "order"), answer=sandbox_answer
        )
        if trace.error:
            results.append(GoldenResult(case.flow, case.name, "fail", trace.error))
            continue
        if update:
            case.expected_file.write_text(
                json.dumps(trace.request, indent=2, ensure_ascii=False) + "\n"
            )
            results.append(GoldenResult(case.flow, case.name, "updated",
                                        str(case.expected_file)))  # fmt: skip
            continue
        if not case.expected_file.is_file():
            results.append(GoldenResult(case.flow, case.name, "fail",
                                        f"{case.expected_file} is missing"))  # fmt: skip
            continue
        diff = json_diff(read_json(case.expected_file, "expected"), trace.request, case.name)
        if diff:
            results.append(GoldenResult(case.flow, case.name, "fail",
                                        "the ERP payload differs", diff))  # fmt: skip
        else:
            results.append(GoldenResult(case.flow, case.name, "ok"))
    return results

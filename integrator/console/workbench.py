"""The console's workbench, like Akinon's Test panel: a flow and a stage, an input (pasted,
or a recorded order), attributes; the script, the mapping or the whole flow run in the
engine's trace mode, nothing called out, nothing written.

Each run loads the project afresh (``ConsoleSource.workbench``): the daemon's own flows are
never touched (a stage keeps its run while a run uses it), and what is tested is what the
files say now. Scripts run in isolated workers with their limits, and at most
``SCRIPT_SECONDS`` a call here; at most ``CONCURRENT`` runs at once; every value shown is cut
to ``SHOWN_BYTES`` of JSON and masked by the project's redactor.

This module imports no web framework: ``app`` turns its answers into pages and JSON.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from integrator.connectors.redact import Redactor
    from integrator.pipeline.project import BuiltFlow, Project

__all__ = ["CONCURRENT", "SCRIPT_SECONDS", "SHOWN_BYTES", "Workbench", "WorkbenchError"]

SCRIPT_SECONDS = 30.0  # a script call from the browser: at most this (or the stage's limit)
CONCURRENT = 2  # workbench runs at once in this process
SHOWN_BYTES = 256 * 1024  # the most JSON of one value shown (its start, and its size)
INPUT_BYTES = 1024 * 1024


class WorkbenchError(Exception):
    """What was wrong with the request (``status``: 400, 404 or 429), for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One workbench request, checked."""

    flow: str
    stage: str  # "flow", or a stage's index
    input: Any
    attributes: dict[str, str]
    response: Any = None
    status: int | None = None


def bounded(value: Any, limit: int = SHOWN_BYTES) -> Any:
    """``value``, or when its JSON is longer than ``limit``: a note with its size and start."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"not_shown": f"cannot be shown as JSON: {exc}"}
    if len(text) <= limit:
        return value
    return {
        "truncated": True,
        "json_chars": len(text),
        "start": text[:4096],
        "note": f"the value is {len(text)} characters of JSON; its first 4096 are shown",
    }


def parse_attributes(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (blank lines skipped) as attributes."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(
                400, f"attributes, line {number}: expected KEY=VALUE, got {line.strip()[:80]!r}"
            )
        out[key.strip()] = value
    return out


def parse_json(text: str, what: str) -> Any:
    """Pasted JSON, or a 400 naming the line and column."""
    if len(text.encode()) > INPUT_BYTES:
        raise WorkbenchError(400, f"{what}: more than {INPUT_BYTES // 1024} KiB")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkbenchError(
            400, f"{what}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise WorkbenchError(400, f"{what}: nested too deeply") from None


class Workbench:
    """The workbench over a project loader and a redactor."""

    def __init__(
        self, project: Callable[[], Project] | None, redactor: Callable[[], Redactor]
    ) -> None:
        self.project, self.redactor = project, redactor
        self._slots = threading.BoundedSemaphore(CONCURRENT)

    def _load(self) -> Project:
        if self.project is None:
            raise WorkbenchError(404, "this console has no project to test (no config.yaml)")
        try:
            return self.project()
        except ConfigurationError as exc:
            raise WorkbenchError(400, f"the project does not load: {exc}") from None

    def _flow(self, project: Project, name: str) -> BuiltFlow:
        built = project.flows.get(name)
        if built is None:
            valid = ", ".join(sorted(project.flows)) or "none"
            raise WorkbenchError(404, f"no valid flow named {name!r}; flows: {valid}")
        return built

    def catalogue(self) -> dict[str, Any]:
        """Every valid flow: the stages that run alone, and its recorded orders."""
        from integrator.pipeline.trace import find_golden
        from integrator.pipeline.workbench import testable_stages

        project = self._load()
        cases: dict[str, list[str]] = {}
        for case in find_golden(project.app.flows_dir):
            cases.setdefault(case.flow, []).append(case.name)
        flows = [
            {
                "flow": name,
                "stages": testable_stages(built),
                "recorded": cases.get(name, []),
            }
            for name, built in sorted(project.flows.items())
        ]
        return dict(self.redactor().redact({"flows": flows}))

    def recorded(self, project: Project, flow: str, case: str) -> Any:
        """A recorded order (``flows/tests/<flow>/<case>.order.json``)."""
        from integrator.pipeline.trace import find_golden
        from integrator.pipeline.workbench import read_json

        for c in find_golden(project.app.flows_dir, flow):
            if c.name == case:
                try:
                    return read_json(c.order_file, "order")
                except ConfigurationError as exc:
                    raise WorkbenchError(400, str(exc)) from None
        raise WorkbenchError(404, f"no recorded order {case!r} for {flow} in flows/tests/{flow}/")

    def job(self, values: dict[str, Any], project: Project) -> Job:
        """A request's values (a form's or a JSON body's), checked."""
        target = values.get("target")  # the page's one select: "FLOW|STAGE"
        if isinstance(target, str) and "|" in target:
            values = {**values, "flow": target.partition("|")[0], "stage": target.partition("|")[2]}
        flow = values.get("flow")
        if not isinstance(flow, str) or not flow:
            raise WorkbenchError(400, "flow: name the flow to test")
        given = values.get("stage")
        stage = "flow" if given is None or given == "" else str(given)
        if stage != "flow" and not _digits(stage):
            raise WorkbenchError(400, f'stage: "flow" or a stage\'s index, not {stage!r}')
        case = values.get("recorded")
        raw = values.get("input")
        if isinstance(case, str) and case:  # "CASE" of the flow's tests, or "FLOW/CASE"
            of, _, name = case.rpartition("/")
            order = self.recorded(project, of or flow, name)
        elif isinstance(raw, str):
            if not raw.strip():
                raise WorkbenchError(400, "input: paste an order's JSON, or pick a recorded one")
            order = parse_json(raw, "input")
        elif raw is None:
            raise WorkbenchError(400, "input: paste an order's JSON, or pick a recorded one")
        else:
            order = raw  # a JSON body's value
        attrs = values.get("attributes") or {}
        if isinstance(attrs, str):
            attrs = parse_attributes(attrs)
        if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()
        ):
            raise WorkbenchError(400, "attributes: an object of strings (KEY=VALUE lines)")
        response = values.get("response")
        if isinstance(response, str):
            response = parse_json(response, "response") if response.strip() else None
        status = values.get("status")
        if isinstance(status, str):
            text = status.strip()
            status = None if not text else int(text) if _digits(text) else -1
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise WorkbenchError(400, "status: a status code from 100 to 599")
        return Job(flow, stage, order, dict(attrs), response, status)

    def run(self, values: dict[str, Any]) -> dict[str, Any]:
        """Run a stage or the whole flow; the answer masked and bounded."""
        if not self._slots.acquire(blocking=False):
            raise WorkbenchError(
                429, f"{CONCURRENT} workbench runs are in progress; try again when they end"
            )
        try:
            return self._run(values)
        finally:
            self._slots.release()

    def _run(self, values: dict[str, Any]) -> dict[str, Any]:
        from integrator.pipeline.workbench import cap_script_time, run_stage

        project = self._load()
        job = self.job(values, project)
        built = self._flow(project, job.flow)
        cap_script_time(built, SCRIPT_SECONDS)  # a BuiltFlow loaded for this run alone
        answer: dict[str, Any] = {"flow": job.flow, "stage": job.stage}
        if job.stage == "flow":
            if not isinstance(job.input, dict):
                raise WorkbenchError(400, "input: the whole flow takes an order object")
            from integrator.pipeline.trace import recording, sandbox_answer, trace_flow

            body, recorded = recording(job.response) if job.response is not None else (None, None)
            code = job.status or recorded or 201
            trace = trace_flow(
                project, built, job.input, job.attributes, body, status=code,
                answer=sandbox_answer,
            )  # fmt: skip
            shown = trace.as_dict()
            for stage in shown["stages"]:
                if "output" in stage:
                    stage["output"] = bounded(stage["output"])
            answer.update(
                kind="flow",
                result_data=bounded(trace.stages[-1].output if trace.stages else None),
                erp_payload=bounded(shown["erp_request"]),
                erp_response=bounded(shown["erp_response"]),
                mapping_data=bounded(shown["mapping_data"]),
                attributes=shown["attributes"],
                stages=shown["stages"],
                state=shown["state"],
                error=shown["error"],
                failure=shown["failure"],
            )
        else:
            try:
                ran = run_stage(built, int(job.stage), job.input, job.attributes)
            except ValueError as exc:
                raise WorkbenchError(400, f"stage: {exc}") from None
            answer.update(ran.as_dict(), result_data=bounded(ran.result_data))
            answer["stage"] = job.stage
            answer["stage_name"] = ran.stage
        return dict(self.redactor().redact(answer))

    def golden(self, flow: str | None) -> dict[str, Any]:
        """The golden cases' status (of ``flow`` when named); nothing rewritten."""
        from integrator.pipeline.workbench import cap_script_time, golden

        if not self._slots.acquire(blocking=False):
            raise WorkbenchError(
                429, f"{CONCURRENT} workbench runs are in progress; try again when they end"
            )
        try:
            project = self._load()
            if flow:
                self._flow(project, flow)
            for built in project.flows.values():
                cap_script_time(built, SCRIPT_SECONDS)
            results = [g.as_dict() for g in golden(project, flow or None)]
        finally:
            self._slots.release()
        passed = sum(1 for r in results if r["status"] == "ok")
        return dict(
            self.redactor().redact(
                {"cases": results, "passed": passed, "failed": len(results) - passed}
            )
        )


def _digits(text: str) -> bool:
    """A few ASCII digits: "²" is a digit to ``str.isdigit`` and not to ``int()``."""
    return text.isascii() and text.isdigit() and len(text) <= 9

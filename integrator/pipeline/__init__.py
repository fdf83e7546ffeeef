"""The pipeline: exchange, stage contract, registry, runner and project loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
    from integrator.pipeline.context import PlannedRequest, RunContext
    from integrator.pipeline.exchange import LOG_PREFIX, Exchange
    from integrator.pipeline.project import BuiltFlow, Project, load_project, run_flow
    from integrator.pipeline.registry import build_stages, builtin_stages, find_stage
    from integrator.pipeline.runner import Outcome, Runner, RunResult
    from integrator.pipeline.stage import BuildContext, OrderRef, SourceStage, Stage

__all__ = [
    "LOG_PREFIX",
    "BuildContext",
    "BuiltFlow",
    "Exchange",
    "OrderRef",
    "Outcome",
    "PlannedRequest",
    "Project",
    "RunContext",
    "RunResult",
    "Runner",
    "SourceStage",
    "Stage",
    "build_stages",
    "builtin_stages",
    "find_stage",
    "load_project",
    "run_flow",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "LOG_PREFIX": "exchange",
        "BuildContext": "stage",
        "BuiltFlow": "project",
        "Exchange": "exchange",
        "OrderRef": "stage",
        "Outcome": "runner",
        "PlannedRequest": "context",
        "Project": "project",
        "RunContext": "context",
        "RunResult": "runner",
        "Runner": "runner",
        "SourceStage": "stage",
        "Stage": "stage",
        "build_stages": "registry",
        "builtin_stages": "registry",
        "find_stage": "registry",
        "load_project": "project",
        "run_flow": "project",
    },
)

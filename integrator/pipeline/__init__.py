"""The pipeline: exchange, stage contract, registry, runner and project loading."""

from __future__ import annotations

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

"""The built-in stages of the order flow."""

from __future__ import annotations

from integrator.pipeline.stage import Stage
from integrator.stages.check_response import CheckResponseStage
from integrator.stages.export import ExportStage
from integrator.stages.feed import FeedStage
from integrator.stages.login import LoginStage
from integrator.stages.mapping import MappingStage
from integrator.stages.mark_sent import MarkSentStage
from integrator.stages.omnium import OmniumMarkStage, OmniumReadStage
from integrator.stages.query_check import QueryCheckStage
from integrator.stages.read import ReadStage
from integrator.stages.script import PostScriptStage, ScriptStage
from integrator.stages.snapshot import SnapshotStage
from integrator.stages.write import WriteStage

__all__ = [
    "BUILTIN",
    "CheckResponseStage",
    "ExportStage",
    "FeedStage",
    "LoginStage",
    "MappingStage",
    "MarkSentStage",
    "OmniumMarkStage",
    "OmniumReadStage",
    "PostScriptStage",
    "QueryCheckStage",
    "ReadStage",
    "ScriptStage",
    "SnapshotStage",
    "WriteStage",
]

BUILTIN: tuple[type[Stage], ...] = (
    LoginStage,
    ReadStage,
    QueryCheckStage,
    ScriptStage,
    MappingStage,
    WriteStage,
    CheckResponseStage,
    MarkSentStage,
    PostScriptStage,
    ExportStage,
    OmniumReadStage,
    OmniumMarkStage,
    FeedStage,
    SnapshotStage,
)

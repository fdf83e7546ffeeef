"""Find stage classes by name: built-ins, then entry points, then ``package.module:Class``."""

from __future__ import annotations

import importlib

from integrator.config.checks import Options
from integrator.config.model import AppConfig, FlowConfig, StageSpec
from integrator.config.yamlfile import YamlDoc
from integrator.errors import ConfigIssue
from integrator.pipeline.flowcheck import check_flow
from integrator.pipeline.stage import BuildContext, SourceStage, Stage

__all__ = ["build_stages", "builtin_stages", "find_stage"]

ENTRY_POINT_GROUP = "integrator.stages"


def builtin_stages() -> dict[str, type[Stage]]:
    """The stages that ship with integrator, by name."""
    from integrator import stages

    return {cls.name: cls for cls in stages.BUILTIN}


def find_stage(name: str) -> type[Stage]:
    """The class for ``name``; LookupError with what is available when there is none."""
    builtins = builtin_stages()
    if name in builtins:
        return builtins[name]
    from importlib.metadata import entry_points  # only for a name that is not built in

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _checked(ep.load(), name)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise LookupError(f"cannot import {name!r}: {exc}") from None
        return _checked(obj, name)
    raise LookupError(
        f"unknown stage {name!r}; built-in stages: {', '.join(builtins)}; or give "
        f"'package.module:Class', or register an entry point in group {ENTRY_POINT_GROUP!r}"
    )


def _checked(obj: object, name: str) -> type[Stage]:
    if not (isinstance(obj, type) and issubclass(obj, Stage)):
        raise LookupError(f"{name!r} is not a subclass of integrator.pipeline.Stage")
    return obj


def build_stages(
    app: AppConfig, flow: FlowConfig, issues: list[ConfigIssue]
) -> tuple[list[Stage], list[str]]:
    """Build every stage of ``flow``; problems go to ``issues``; returns stages and warnings."""
    doc = flow.doc or YamlDoc(flow.file, {})
    ctx = BuildContext(app, flow)
    built: list[tuple[StageSpec, Stage]] = []
    for spec in flow.stages:
        try:
            cls = find_stage(spec.name)
        except LookupError as exc:
            issues.append(doc.issue(spec.key, str(exc)))
            continue
        opts = Options(spec.options, doc, spec.key, issues, set(cls.allowed))
        built.append((spec, cls.from_config(opts, ctx)))
    stages = [stage for _spec, stage in built]
    sources = [s for s in stages if isinstance(s, SourceStage)]
    if len(sources) != 1 and len(stages) == len(flow.stages):
        issues.append(
            doc.issue(
                "stages", f"a flow needs exactly one source stage (read); found {len(sources)}"
            )
        )
    writers = [s for s in stages if s.writes]
    if len(writers) > 1:
        issues.append(doc.issue("stages", "a flow may have at most one write stage"))
    warnings = [f"{flow.file}: {w}" for w in ctx.warnings]
    check_flow(app, flow, built, doc, issues, warnings)
    return stages, warnings

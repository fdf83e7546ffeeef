"""Load a project (config.yaml + flows), build flows, and run one flow once."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from integrator.config.load import load_app, load_flows
from integrator.config.model import AppConfig, FlowConfig
from integrator.connectors.http import Connector
from integrator.connectors.redact import Redactor
from integrator.connectors.resolve import resolve_connector
from integrator.errors import ConfigIssue, ConfigurationError
from integrator.metrics import Metrics
from integrator.pipeline.context import RunContext
from integrator.pipeline.registry import build_stages
from integrator.pipeline.runner import Outcome, Runner, RunResult
from integrator.pipeline.stage import Stage
from integrator.scripting.pool import ScriptPool
from integrator.state.store import Store

__all__ = ["BuiltFlow", "Project", "load_project", "run_flow"]


@dataclass
class BuiltFlow:
    """A flow with its stages built."""

    config: FlowConfig
    stages: list[Stage]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Project:
    """Everything ``integrator validate`` checks."""

    app: AppConfig
    flows: dict[str, BuiltFlow]
    issues: list[ConfigIssue]
    warnings: list[str]

    def flow(self, name: str) -> BuiltFlow:
        """A built flow by name (or by its file path); ConfigurationError if unknown."""
        if name in self.flows:
            return self.flows[name]
        for f in self.flows.values():
            if Path(f.config.file).resolve() == Path(name).resolve():
                return f
        known = ", ".join(sorted(self.flows)) or "none"
        raise ConfigurationError(
            [
                ConfigIssue(
                    str(self.app.flows_dir), "", f"no valid flow named {name!r}; flows: {known}"
                )
            ]
        )


def load_project(config_path: Path, *, strict: bool = True, need_secrets: bool = True) -> Project:
    """Load config.yaml and every flow; ``strict`` raises when any issue was found.

    ``need_secrets=False`` tolerates unset variables (for commands that call no connector).
    """
    app = load_app(config_path, need_secrets=need_secrets)
    issues: list[ConfigIssue] = []
    flows: dict[str, BuiltFlow] = {}
    all_warnings: list[str] = []
    for fc in load_flows(app, issues):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported through stage warnings
            stages, warns = build_stages(app, fc, issues)
        all_warnings.extend(warns)
        if not any(i.file == fc.file and i.severity == "error" for i in issues):
            flows[fc.name] = BuiltFlow(fc, stages, warns)
    if strict and issues:
        raise ConfigurationError(issues)
    return Project(app, flows, issues, all_warnings)


def connector_for(
    app: AppConfig, name: str, redactor: Redactor, pool: int, metrics: Metrics | None = None
) -> Connector:
    """Build the connector ``name`` (validated at load, so it exists)."""
    cfg = resolve_connector(app.connectors, name)
    if cfg is None:
        raise ConfigurationError(
            [ConfigIssue(app.file, "connectors", f"no global connector named {name!r}")]
        )
    return Connector(cfg, redactor, pool_size=pool, metrics=metrics)


def run_flow(
    project: Project,
    name: str,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    only_order: str | None = None,
    on_order: Callable[[Outcome], None] | None = None,
    store: Store | None = None,
    metrics: Metrics | None = None,
    stop: threading.Event | None = None,
    replay: bool = False,
) -> tuple[RunResult, RunContext]:
    """Run one flow once, holding its lock; returns the result and the run context.

    ``stop``: once set, the run takes no new order and ends after the ones in flight.
    """
    app = project.app
    built = project.flow(name)
    flow = built.config
    own_store = store is None
    store = store or Store(app.state_url)
    redactor = Redactor(app.secrets)
    pool = flow.concurrency * 4 + 4
    metrics = metrics or Metrics()
    source = connector_for(app, flow.source, redactor, pool, metrics)
    target = (
        source
        if flow.target == flow.source
        else connector_for(app, flow.target, redactor, pool, metrics)
    )
    run = RunContext(
        app=app,
        flow=flow,
        store=store,
        redactor=redactor,
        source=source,
        target=target,
        dry_run=dry_run,
        only_order=only_order,
        scripts=ScriptPool(size=flow.concurrency, memory_mb=flow.script_memory_mb),
        metrics=metrics,
        stop=stop,
        replay=replay,
    )
    try:
        with store.flow_lock(flow.name), run.connectors_open():
            if not dry_run:
                store.close_abandoned_runs(flow.name)
                run.run_id = store.start_run(flow.name)
            run.open_log()
            try:
                result = Runner(built.stages, run, on_order=on_order, limit=limit).execute()
            finally:
                run.close_log()
            if not dry_run:
                store.finish_run(
                    run.run_id,
                    result.status,
                    result.ok,
                    result.failed,
                    result.skipped,
                    result.error,
                )
                metrics.run(flow.name, result.status)
                metrics.journal_states(flow.name, store.count_states(flow.name))
        return result, run
    finally:
        run.scripts.close()
        if own_store:
            store.close()

"""Load a project (config.yaml + flows), build flows, and run one flow once."""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from integrator.config.load import load_app, load_flows, read_app
from integrator.config.model import AppConfig, FlowConfig
from integrator.connectors.redact import Redactor, known_secrets
from integrator.connectors.resolve import resolve_connector
from integrator.errors import ConfigIssue, ConfigurationError
from integrator.pipeline.breaker import CircuitBreaker
from integrator.pipeline.registry import build_stages
from integrator.pipeline.stage import SourceStage, Stage
from integrator.scripting.pool import ScriptPool
from integrator.state.ledger import Ledger, Policy

if TYPE_CHECKING:  # a run's modules (requests, SQLAlchemy, Prometheus) load when a flow runs
    from integrator.connectors.http import Connector
    from integrator.metrics import Metrics
    from integrator.pipeline.context import RunContext
    from integrator.pipeline.runner import Outcome, RunResult
    from integrator.state.store import Store

__all__ = ["BuiltFlow", "Project", "load_project", "policy_for", "run_flow"]


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


def load_project(
    config_path: Path,
    *,
    strict: bool = True,
    need_secrets: bool = True,
    state_url: str | None = None,
    collect: bool = False,
) -> Project:
    """Load config.yaml and every flow; ``strict`` raises when any issue was found.

    ``need_secrets=False`` tolerates unset variables (for commands that call no connector);
    ``state_url`` replaces config.yaml's state store. ``collect`` (``validate``): problems in
    config.yaml do not stop the flows from being checked, all are in ``issues``.
    """
    issues: list[ConfigIssue] = []
    if collect:
        read = read_app(config_path, issues, need_secrets=need_secrets, state_url=state_url)
        if read is None:
            raise ConfigurationError(issues)
        app = read
    else:
        app = load_app(config_path, need_secrets=need_secrets, state_url=state_url)
    flows: dict[str, BuiltFlow] = {}
    all_warnings: list[str] = []
    configs = load_flows(app, issues, need_secrets=need_secrets)
    flow_secrets = frozenset().union(*(fc.secrets for fc in configs))
    if not flow_secrets <= app.secrets:  # the redactors of every run and log learn them
        app = dataclasses.replace(app, secrets=app.secrets | flow_secrets)
    for fc in configs:
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
    from integrator.connectors.http import Connector

    cfg = resolve_connector(app.connectors, name)
    if cfg is None:
        raise ConfigurationError(
            [ConfigIssue(app.file, "connectors", f"no global connector named {name!r}")]
        )
    return Connector(cfg, redactor, pool_size=pool, metrics=metrics)


def policy_for(app: AppConfig, built: BuiltFlow) -> Policy:
    """What the ledger may do for this flow, from its stages' capabilities and its target."""
    flow = built.config
    order_stages = [s for s in built.stages if not isinstance(s, SourceStage)]
    writes = [i for i, s in enumerate(order_stages) if s.writes]
    before_write = order_stages[: writes[0]] if writes else order_stages
    target = resolve_connector(app.connectors, flow.target)
    timeout = target.timeout if target is not None else 30.0
    return Policy(
        can_check=any(s.settles_ambiguous_write for s in before_write),
        safe_resend=any(s.repeatable for s in order_stages if s.writes),
        max_attempts=flow.max_attempts,
        backoff_seconds=flow.backoff_seconds,
        settle_seconds=flow.settle_seconds if flow.settle_seconds is not None else 2 * timeout,
        target_id=(target.connector_id or target.name) if target is not None else flow.target,
    )


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
    replay_by: str = "hand",
    grace: float | None = None,
    events: bool = False,
    listing: bool = True,
) -> tuple[RunResult, RunContext]:
    """Run one flow once, holding its lock; returns the result and the run context.

    ``stop``: once set, the run takes no new order; the ones in flight get ``grace`` seconds
    (None: as long as they need) and the run ends ``interrupted``. ``events``: after its
    listing (none when ``listing`` is false: an event run), the run also takes the orders
    events queued (the daemon). Whatever happens,
    the run's end is recorded; a run whose process died is closed as interrupted by the next
    run that takes the flow's lock. ``dry_run``: nothing is written, not even a state file or a
    lock; the store (when one exists) is read, read-only, for where each order stands.
    """
    from integrator.metrics import Metrics
    from integrator.state.store import Store

    built = project.flow(name)
    own_store = store is None
    if store is None:  # a dry run reads the store as it is, and creates none
        url = project.app.state_url
        store = Store.open_read_only(url) if dry_run else Store(url)
    try:
        return _run(
            project, built, store, dry_run=dry_run, limit=limit, only_order=only_order,
            on_order=on_order, metrics=metrics or Metrics(), stop=stop, replay=replay,
            replay_by=replay_by, grace=grace, events=events, listing=listing,
        )  # fmt: skip
    finally:
        if own_store and store is not None:
            store.close()


def _run(
    project: Project,
    built: BuiltFlow,
    store: Store | None,
    *,
    dry_run: bool,
    limit: int | None,
    only_order: str | None,
    on_order: Callable[[Outcome], None] | None,
    metrics: Metrics,
    stop: threading.Event | None,
    replay: bool,
    replay_by: str,
    grace: float | None,
    events: bool,
    listing: bool,
) -> tuple[RunResult, RunContext]:
    """``run_flow`` once the store is open: connectors, the run context, the lock, the run."""
    from integrator.pipeline.context import Mode, RunContext
    from integrator.pipeline.runner import Runner

    app, flow = project.app, built.config
    redactor = Redactor(known_secrets(app))
    pool = flow.concurrency * 4 + 4
    source = connector_for(app, flow.source, redactor, pool, metrics)
    try:
        target = (
            source
            if flow.target == flow.source
            else connector_for(app, flow.target, redactor, pool, metrics)
        )
    except BaseException:
        source.close()
        raise
    ledger = Ledger(store, flow.name, policy_for(app, built), redactor, dry_run=dry_run)
    run = RunContext(
        app=app,
        flow=flow,
        store=store,
        redactor=redactor,
        source=source,
        target=target,
        ledger=ledger,
        mode=Mode.DRY_RUN if dry_run else Mode.RUN,
        only_order=only_order,
        scripts=ScriptPool(size=flow.concurrency, memory_mb=flow.script_memory_mb),
        metrics=metrics,
        stop=stop,
        replay=replay,
        replay_by=replay_by,
        breaker=CircuitBreaker({c.name: c.circuit_breaker for c in reversed(app.connectors)}),
    )
    # A dry run takes no lock (it writes nothing a run could collide with) and records nothing.
    writes = None if dry_run else store
    try:
        with run.connectors_open(), writes.locks.hold(flow.name) if writes else nullcontext():
            if writes is not None:
                _history(project, writes, built, ledger)
                writes.runs.close_abandoned(flow.name)
                writes.pending.release_abandoned(flow.name)
                run.run_id = ledger.run_id = writes.runs.start(flow.name)
                metrics.run_started(flow.name, run.run_id)
            pending = None
            if events and writes is not None and not only_order:
                queue = writes.pending
                pending = lambda: queue.claim(flow.name, run.run_id)  # noqa: E731
            result: RunResult | None = None
            escaped: BaseException | None = None
            try:
                run.open_log()
                result = Runner(
                    built.stages, run, on_order=on_order, limit=limit, grace=grace,
                    pending=pending, listing=listing,
                ).execute()  # fmt: skip
            except BaseException as exc:
                escaped = exc
                raise
            finally:
                run.close_log()
                if writes is not None:
                    _record_end(writes, run, result, pending is not None, escaped)
            assert result is not None  # the runner returns, or its exception went up
            if writes is not None:
                metrics.run(flow.name, result.status)
                metrics.journal_states(flow.name, writes.journal.count_states(flow.name))
        return result, run
    finally:
        run.scripts.close()


def _history(project: Project, store: Store, built: BuiltFlow, ledger: Ledger) -> None:
    """A flow's first run: take the history of its earlier names (``renamed_from``), or refuse
    to start blind when the store holds deliveries to the same target by a flow that no file
    defines any more (a rename without ``renamed_from`` would write those orders again)."""
    flow = built.config
    known = store.journal.flows()
    if flow.name in known:
        return
    if flow.renamed_from:
        taken = store.journal.adopt(flow.name, flow.renamed_from)
        ledger.note(None, "renamed", f"took the history of {', '.join(flow.renamed_from)}: "
                    f"{taken} orders")  # fmt: skip
        return
    if flow.new_history:
        return
    target = ledger.policy.target_id
    gone = sorted(
        name
        for name in known - set(project.flows)
        if target and target in store.journal.targets(name)
    )
    if gone:
        raise ConfigurationError(
            [
                ConfigIssue(
                    flow.file,
                    "name",
                    f"flow {flow.name!r} has no history, and the state store holds orders "
                    f"delivered to {target!r} by {', '.join(gone)}, which no flow file defines "
                    f"any more. If {flow.name!r} is that flow renamed, add `renamed_from: "
                    f"[{gone[0]}]` to take its history (else its orders may be written again); "
                    "if it is another flow, add `new_history: true`",
                )
            ]
        )


def _record_end(
    store: Store,
    run: RunContext,
    result: RunResult | None,
    events: bool,
    escaped: BaseException | None,
) -> None:
    """Write the run's end (a second signal ends it interrupted, anything else that escaped
    failed); give back the event orders it claimed unless it handled them."""
    from integrator.state.runs import RunStatus

    name = run.flow.name
    if result is None:
        if isinstance(escaped, KeyboardInterrupt):
            status, why = RunStatus.INTERRUPTED, "stopped at once by a second signal"
        else:
            status = RunStatus.FAILED
            why = run.redactor.scrub(f"{type(escaped).__name__}: {escaped}")
        store.runs.finish(run.run_id, status, 0, 0, {}, why)
        if events:
            store.pending.release(name, run.run_id)
        return
    store.runs.finish(
        run.run_id,
        result.status,
        result.ok,
        result.failed,
        result.skipped_by,
        result.error,
        oldest_unsent_seconds=run.oldest_unsent_seconds,
    )
    if events:
        if result.status in (RunStatus.OK, RunStatus.PARTIAL):
            store.pending.done(name, run.run_id)
        else:
            store.pending.release(name, run.run_id)

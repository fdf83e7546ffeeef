"""``integrator daemon``: every flow on its schedule, until SIGTERM.

- APScheduler 3 (BackgroundScheduler) fires cron and interval jobs; one instance per flow at
  a time in this process (``max_instances=1``: a fire that finds the last run still going is
  skipped, never started twice), and one across processes (the store's flow lock: a run that
  finds it held is recorded as skipped).
- ``triggered_by`` flows are queued when their upstream run ends.
- SIGTERM/SIGINT: no new run, no new order; in-flight orders finish within the grace period;
  each run records its end; exit 0 (1 when the grace period ran out).
- SIGHUP, or a changed ``config.yaml`` or file under ``flows/``: reload, checking first; a flow
  whose new config is invalid keeps running with its old config, and the daemon says why.
- HTTP (``integrator.scheduler.web``; served by waitress within ``HttpLimits``): ``/healthz``,
  ``/metrics`` and ``POST /events/<flow>``, on loopback unless ``behind_proxy``.
- A heartbeat in the state store (``state/daemons.py``): every ``heartbeat_seconds`` one small
  write says that this daemon runs and where its console answers, valid for
  ``HEARTBEAT_LIVES`` heartbeats; a standalone console over the same store links there. An
  orderly stop deletes it; a killed daemon's expires.
"""

from __future__ import annotations

import datetime as dt
import errno
import hmac
import json
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jmespath
import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor as JobPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from integrator.alarms.evaluator import ALARM_INTERVAL, Evaluator, Subject
from integrator.connectors.redact import known_secrets
from integrator.console.live import LiveRuns
from integrator.errors import ConfigurationError, FatalError, UserError
from integrator.logs import learn_secrets, route_library_logs
from integrator.metrics import PrometheusMetrics
from integrator.pipeline.project import BuiltFlow, Project, load_project, run_flow
from integrator.scheduler.schedule import Schedule
from integrator.scheduler.web import LOOPBACK_PROXIES, App, HttpLimits, bind_refusal
from integrator.state.daemons import Daemons, daemon_id
from integrator.state.locks import FlowBusy
from integrator.state.store import Store

if TYPE_CHECKING:
    from integrator.scheduler.httpserver import WebServer

__all__ = ["Daemon"]

log = structlog.get_logger("integrator.daemon")

HEARTBEAT_LIVES = 3  # a heartbeat holds this many intervals: a late one is not an expiry


class Daemon:
    """The scheduler, the flows it runs, and the operators' endpoint."""

    def __init__(
        self,
        config: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
        grace_seconds: float = 30.0,
        watch_seconds: float = 2.0,
        max_parallel_flows: int = 8,
        state_url: str | None = None,
        http_limits: HttpLimits | None = None,
        behind_proxy: bool = False,
        trusted_proxies: Sequence[str] = LOOPBACK_PROXIES,
        alarm_seconds: float = ALARM_INTERVAL,
        public_host: str | None = None,
        heartbeat_seconds: float = 10.0,
    ) -> None:
        self.config, self.state_url = config, state_url
        # the heartbeat in the store that tells standalone consoles where this daemon answers
        self.heartbeat_seconds = heartbeat_seconds
        self.daemon_id = daemon_id()
        self.console_url: str | None = None  # the console's URL once served (None: none)
        self._beat_lock = threading.Lock()  # a heartbeat never lands after the stop's delete
        self.alarm_seconds = alarm_seconds  # the alarms' timer (and after each run)
        self.host, self.port = host, port
        self.http_limits = http_limits or HttpLimits()
        self.behind_proxy, self.public_host = behind_proxy, public_host
        self.trusted_proxies = tuple(trusted_proxies)  # whose X-Forwarded-* count (behind one)
        self.grace_seconds, self.watch_seconds = grace_seconds, watch_seconds
        self.metrics = PrometheusMetrics()
        # the alarms: on their timer and after each run, under the store's lease
        self.alarms = Evaluator(alarm_seconds, self._alarm_subject, on_states=self.metrics.alarms)
        self.live = LiveRuns()  # the runs in progress, in memory, for the console's live view
        self.stopping = threading.Event()  # set: no new run, no new order
        self._reload = threading.Event()
        self._wake = threading.Event()
        # flow → runs in progress (a poll and an event run may overlap while one waits)
        self._running: Counter[str] = Counter()
        self._event_backoff: dict[str, float] = {}  # flow → seconds event runs wait (failing)
        self._running_lock = threading.Condition()
        self.flows: dict[str, BuiltFlow] = {}
        self.project: Project | None = None
        self.store: Store | None = None
        self._mtimes: dict[Path, float] = {}
        # job id → the (schedule, coalesce) its timer was made for: a reload keeps equal ones
        self._timers: dict[str, tuple[Schedule, bool]] = {}
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            executors={"default": JobPool(max_workers=max_parallel_flows)},
            job_defaults={"max_instances": 1},
        )
        self.scheduler.add_listener(self._missed, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self.http: WebServer | None = None

    # ------------------------------------------------------------ loading
    def load(self) -> dict[str, list[str]]:
        """Load the project; keep the old config of any flow whose new one is invalid. Returns
        the timers kept, reset and removed."""
        project = load_project(self.config, strict=False, state_url=self.state_url)
        learn_secrets(known_secrets(project.app))  # the flow files' and URLs' secrets too
        bad_files = {i.file for i in project.issues if i.severity == "error"}
        for issue in project.issues:
            log.error("config_issue", issue=str(issue))
        flows = dict(project.flows)
        for name, old in self.flows.items():
            if name not in flows and old.config.file in bad_files:
                flows[name] = old
                log.warning("flow_kept", flow=name, reason=f"the new {old.config.file} is invalid")
        if self.store is None or self.store.url != project.app.state_url:
            if self.store is not None:
                self.store.close()
            self.store = Store(project.app.state_url)
        self.project = project
        project.flows.update(flows)
        self.flows = flows
        self._mtimes = self._snapshot()
        return self._schedule()

    def _watched(self) -> list[Path]:
        assert self.project is not None
        flows_dir = self.project.app.flows_dir
        files = [self.config]
        if flows_dir.is_dir():
            files += [p for p in flows_dir.rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
        return files

    def _snapshot(self) -> dict[Path, float]:
        out = {}
        for path in self._watched():
            try:
                out[path] = path.stat().st_mtime
            except OSError:
                continue
        return out

    def _schedule(self) -> dict[str, list[str]]:
        """Timers for the flows' (and their reconciliations') cron and ``every`` schedules.

        A timer whose schedule did not change is kept as it is: a reload (of any file) must not
        restart an ``every: 1h`` timer, or a daemon reloaded more often than the interval would
        never run the flow. The job reads the flow's current config when it fires, so a flow
        whose stages changed and whose schedule did not runs the new stages on the old beat.
        Returns the timers kept, reset (new or changed) and removed, by job name.
        """
        wanted: dict[str, tuple[Any, Schedule, str, str, bool]] = {}
        for name, built in sorted(self.flows.items()):
            s = built.config.schedule
            if s.kind in ("cron", "every"):
                wanted[f"flow:{name}"] = (self._job, s, name, name, s.coalesce)
        for name, built in sorted(self.flows.items()):
            rs = built.config.reconcile.schedule if built.config.reconcile else None
            if rs is not None and rs.kind in ("cron", "every"):
                wanted[f"reconcile:{name}"] = (
                    self._reconcile_job, rs, name, f"reconcile {name}", True
                )  # fmt: skip
        changes: dict[str, list[str]] = {
            "timers_kept": [],
            "timers_reset": [],
            "timers_removed": [],
        }
        for job in self.scheduler.get_jobs():
            if job.id.startswith(("flow:", "reconcile:")) and job.id not in wanted:
                job.remove()
                self._timers.pop(job.id, None)
                changes["timers_removed"].append(str(job.name))
        for job_id, (func, s, flow, label, coalesce) in wanted.items():
            if (
                self._timers.get(job_id) == (s, coalesce)
                and self.scheduler.get_job(job_id) is not None
            ):
                changes["timers_kept"].append(label)
                continue
            self._add(func, s, flow, job_id, label, coalesce)
            self._timers[job_id] = (s, coalesce)
            changes["timers_reset"].append(label)
            event = "flow_scheduled" if job_id.startswith("flow:") else "reconcile_scheduled"
            log.info(event, flow=flow, schedule=s.describe())
        return changes

    def next_runs(self) -> dict[str, str]:
        """When each flow's (and reconciliation's) timer fires next, by job name (ISO 8601)."""
        out: dict[str, str] = {}
        for job in self.scheduler.get_jobs():
            when = getattr(job, "next_run_time", None)  # unset before the scheduler starts
            if job.id.startswith(("flow:", "reconcile:")) and when is not None:
                out[str(job.name)] = when.isoformat()
        return out

    def _add(
        self, func: Any, s: Schedule, flow: str, job_id: str, label: str, coalesce: bool
    ) -> None:
        """The job of a cron or ``every`` schedule (others fire otherwise)."""
        if s.kind == "cron":
            trigger: Any = s.trigger()
        else:
            trigger = IntervalTrigger(seconds=s.every_seconds, timezone="UTC")
        self.scheduler.add_job(
            func,
            trigger,
            args=[flow],
            id=job_id,
            name=label,
            misfire_grace_time=s.misfire_grace_seconds,
            coalesce=coalesce,
            replace_existing=True,
        )

    # -------------------------------------------------------------- runs
    def _job(self, name: str, *, listing: bool = True) -> str:
        """One run of ``name``; never raises (a failing flow must not stop the daemon). The run
        lists the source (``listing``; an event run does not), then takes the orders events
        queued. Returns the run's status, or ``skipped`` when the flow was already running."""
        if self.stopping.is_set() or self.project is None or self.store is None:
            return "skipped"
        project, store = self.project, self.store
        structlog.contextvars.bind_contextvars(flow=name)
        with self._running_lock:
            self._running[name] += 1
        status = "failed"
        live = self.live.hooks(self.metrics, name)
        try:
            result, _ = run_flow(
                project,
                name,
                store=store,
                metrics=live,
                on_order=live.order_ended,
                stop=self.stopping,
                grace=self.grace_seconds,
                events=True,
                listing=listing,
            )
            status = result.status.value
            log.info(
                "run_ended",
                flow=name,
                run_id=result.run_id,
                status=status,
                ok=result.ok,
                failed=result.failed,
                skipped=result.skipped,
                seconds=round(result.seconds, 3),
            )
        except FlowBusy as exc:
            status = "skipped"
            self.metrics.run(name, "skipped")
            log.info("run_skipped", flow=name, reason=str(exc))
        except FatalError as exc:
            self.metrics.run(name, "failed")
            log.error("run_failed", flow=name, error=str(exc))
        except ConfigurationError as exc:
            self.metrics.run(name, "failed")
            log.error("run_failed", flow=name, error=str(exc))
        except Exception as exc:
            self.metrics.run(name, "failed")
            log.exception("run_crashed", flow=name, error=f"{type(exc).__name__}: {exc}")
        finally:
            live.close(status)
            with self._running_lock:
                self._running[name] -= 1
                if self._running[name] <= 0:
                    del self._running[name]
                self._running_lock.notify_all()
            structlog.contextvars.unbind_contextvars("flow")
        # Orders queued after this run's last look at the queue, or a run that could not take
        # them (the flow busy elsewhere, a failure): run again for them, backing off while the
        # flow fails, so that a broken ERP is not called again at once and for ever.
        if status in ("ok", "partial"):
            self._event_backoff.pop(name, None)
        elif status != "skipped":
            self._event_backoff[name] = min(2 * self._event_backoff.get(name, 2.5), 300.0)
        self._wake_if_waiting(name, 2.0 if status == "skipped" else 0.0)
        if status != "skipped" and listing:
            self._trigger_after(name, status)
        if status != "skipped":
            self.alarms.evaluate(name)
        return status

    def _alarm_subject(self) -> Subject | None:
        """What the alarms' evaluator reads: none while loading or stopping."""
        if self.project is None or self.store is None or self.stopping.is_set():
            return None
        return self.project.app, [b.config for _n, b in sorted(self.flows.items())], self.store

    def _wake_if_waiting(self, name: str, delay: float = 0.0) -> None:
        try:
            waiting = self.store is not None and self.store.pending.waiting(name) > 0
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop the daemon
            log.error("event_queue_unreadable", flow=name, error=f"{type(exc).__name__}: {exc}")
            return
        if waiting and not self.stopping.is_set():
            self._event_run(name, delay)

    def _event_run(self, name: str, delay: float = 0.0) -> None:
        """An event run of ``name`` in ``delay`` seconds (later while the flow fails): one job
        per flow at most (coalesced), never dropped for being late; a run in progress takes
        the queue at its end anyway."""
        delay = max(delay, self._event_backoff.get(name, 0.0))
        self.scheduler.add_job(
            self._job,
            "date",
            run_date=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay),
            args=[name],
            kwargs={"listing": False},
            id=f"events:{name}",
            name=f"events {name}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    def _reconcile_job(self, name: str) -> None:
        """Reconcile ``name``; report the counts as metrics; never raises."""
        if self.stopping.is_set() or self.project is None:
            return
        from integrator.reconcile import reconcile

        try:
            result = reconcile(self.project, name, stop=self.stopping)
        except Exception as exc:  # noqa: BLE001 - a failing check must not stop the daemon
            log.error("reconcile_failed", flow=name, error=f"{type(exc).__name__}: {exc}")
            return
        self.metrics.reconciled(name, result.counts())
        log.info("reconciled", flow=name, **result.counts())
        if result.stock_differences:  # Akinon's Full Stock idea: the stock flow fixes them
            self._job(name)

    def accept_event(self, name: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """An event-subscription webhook for flow ``name``: check, then queue the run.

        401 unless the flow's secret header matches (constant-time); 400 without an order id;
        202 once queued. Whether the order is one the flow takes is the run's business: an
        order it filters out is acknowledged and ignored.
        """
        built = self.flows.get(name)
        events = built.config.events if built is not None else None
        if events is None:
            return 404, {"detail": f"no flow {name!r} takes events"}
        given = str(headers.get(events.header) or "")
        if not hmac.compare_digest(given.encode(), events.secret.encode()):
            self.metrics.run(name, "event_refused")
            return 401, {"detail": "unauthorized"}
        try:
            event = json.loads(body or b"null")
        except ValueError:
            return 400, {"detail": "the body is not JSON"}
        found = jmespath.search(events.id_path, event) if isinstance(event, dict) else None
        if found in (None, "") or isinstance(found, dict | list):
            return 400, {"detail": f"no order id at {events.id_path!r} in the event"}
        if self.stopping.is_set() or self.store is None:
            return 503, {"detail": "shutting down; the delta poll will take the order"}
        try:
            self.store.pending.add(name, str(found))  # committed before the 202: it will run
        except Exception as exc:  # noqa: BLE001 - no 202 unless the order is queued for sure
            log.error("event_not_queued", flow=name, error=f"{type(exc).__name__}: {exc}")
            return 503, {"detail": "the state store could not queue the event; send it again"}
        self._event_run(name)
        log.info("event_accepted", flow=name, order=str(found))
        return 202, {"accepted": True, "order": str(found)}

    def _trigger_after(self, upstream: str, status: str) -> None:
        if self.stopping.is_set():
            return
        for name, built in self.flows.items():
            s = built.config.schedule
            if s.kind == "triggered_by" and s.triggered_by == upstream:
                if s.only_on_success and status != "ok":
                    log.info("trigger_not_fired", flow=name, upstream=upstream, status=status)
                    continue
                self.scheduler.add_job(
                    self._job,
                    args=[name],
                    id=f"trigger:{name}:{uuid.uuid4().hex[:8]}",
                    name=name,
                    misfire_grace_time=s.misfire_grace_seconds,
                )
                log.info("flow_triggered", flow=name, upstream=upstream)

    def _missed(self, event: JobExecutionEvent) -> None:
        job = str(event.job_id)
        name = job.split(":")[1] if ":" in job else job
        why = "still running" if event.code == EVENT_JOB_MAX_INSTANCES else "missed its fire time"
        if job.startswith("events:"):  # the run in progress takes the queue at its end
            log.info("event_run_joined", flow=name, reason=why)
            return
        log.warning("fire_skipped", flow=name, reason=why)
        self.metrics.run(name, "skipped")

    def run_now(self, name: str) -> None:
        """Queue a run of ``name`` at once (tests, and a future API)."""
        self.scheduler.add_job(self._job, args=[name], id=f"now:{name}:{uuid.uuid4().hex[:8]}")

    # ------------------------------------------------------------- health
    def healthy(self) -> tuple[bool, dict[str, Any]]:
        """Scheduler running and store reachable."""
        store_ok = self.store is not None and self.store.ping()
        alive = bool(self.scheduler.running)
        return alive and store_ok, {"scheduler": alive, "store": store_ok}

    def _serve(self) -> None:
        """Listen for /healthz, /metrics and events (waitress, imported only now)."""
        refusal = bind_refusal(self.host, self.behind_proxy)
        if refusal is not None:
            raise FatalError(f"--http {self.host}:{self.port}: {refusal}")
        from integrator.scheduler.httpserver import WebServer

        console = self._console()
        app = App(self, self.http_limits, console, public_host=self.public_host)
        server = WebServer(
            app,
            self.host,
            self.port,
            self.http_limits,
            behind_proxy=self.behind_proxy,
            trusted_proxies=self.trusted_proxies,
        )
        try:
            server.start()
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                why = f"port {self.port} is in use by another process (another daemon?)"
            raise UserError(
                f"cannot listen on {self.host}:{self.port} for /healthz and /metrics: "
                f"{why}; choose another address with --http HOST:PORT"
            ) from None
        self.http = server
        self.port = server.port
        self.console_url = None if console is None else self._console_url()

    def _console_url(self) -> str:
        """Where people open this daemon's console: the public https URL with
        ``--public-host`` (the proxy's), else the address it listens on."""
        if self.public_host:
            return f"https://{self.public_host}/"
        host = self.host.strip("[]")
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    # ------------------------------------------------------------ heartbeat
    def _beat(self) -> None:
        """Record in the store that this daemon runs (one small write); never raises."""
        with self._beat_lock:
            if self.stopping.is_set() or self.store is None:
                return
            try:
                Daemons(self.store).beat(
                    self.daemon_id, self.console_url, HEARTBEAT_LIVES * self.heartbeat_seconds
                )
            except Exception as exc:  # noqa: BLE001 - a busy store must not stop the daemon
                log.warning("heartbeat_not_recorded", error=f"{type(exc).__name__}: {exc}")

    def _heartbeats(self) -> None:
        """A thread of its own (the scheduler's pool may be busy with long runs)."""
        while not self.stopping.wait(self.heartbeat_seconds):
            self._beat()

    def _forget_me(self) -> None:
        """The orderly stop: delete the heartbeat, so no console links here any more."""
        with self._beat_lock:
            if self.store is None:
                return
            try:
                Daemons(self.store).gone(self.daemon_id)
            except Exception as exc:  # noqa: BLE001 - it expires anyway
                log.warning("heartbeat_not_removed", error=f"{type(exc).__name__}: {exc}")

    def _console(self) -> Any:
        """The operator console over this daemon's store and flows (Flask is imported here):
        on loopback; beyond it only with users, --behind-proxy and --public-host."""
        from integrator.console.guard import loopback_refusal

        def users() -> Any:
            return self.project.app.console if self.project is not None else None

        if loopback_refusal(self.host) is not None:
            cfg = users()
            if cfg is None or not cfg.enabled or not self.behind_proxy or not self.public_host:
                log.warning(
                    "console_not_served",
                    reason=f"{self.host} is beyond loopback: the console is served there only "
                    "with users (config.yaml's console:), --behind-proxy and --public-host",
                )
                return None
        from integrator.connectors.redact import Redactor
        from integrator.console.app import ConsoleSource, create_app

        def store() -> Store:
            assert self.store is not None  # loaded before serving
            return self.store

        def redactor() -> Redactor:
            assert self.project is not None
            return Redactor(known_secrets(self.project.app))

        def log_dir() -> Path:
            assert self.project is not None
            return self.project.app.log_dir

        def project() -> Project:
            assert self.project is not None
            return self.project

        return create_app(
            ConsoleSource(
                store=store,
                redactor=redactor,
                log_dir=log_dir,
                schedules=lambda: {n: b.config.schedule for n, b in self.flows.items()},
                where="daemon",
                console=users,
                project=project,
                runnable=project,
                run_now=self.queue_run,
                live=self.live,
                alarm_specs=lambda: {n: b.config.alarms for n, b in self.flows.items()},
                evaluator=self.alarms,
                workbench=lambda: load_project(
                    self.config, strict=False, need_secrets=False, state_url=self.state_url
                ),
            ),
            public_host=self.public_host,
        )

    def queue_run(self, name: str) -> str:
        """Run now (the console): the flow's run queued on the scheduler, at most one waiting."""
        from apscheduler.jobstores.base import ConflictingIdError

        from integrator.pipeline.recovery import ActionRefused

        if name not in self.flows:
            raise ActionRefused(f"no flow named {name!r} is scheduled by this daemon")
        if self.stopping.is_set():
            raise ActionRefused("the daemon is stopping: no new run")
        try:
            self.scheduler.add_job(self._job, args=[name], id=f"console-now:{name}")
        except ConflictingIdError:
            return f"a run of {name} is already queued"
        return f"a run of {name} is queued; it starts as soon as the flow is free"

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load, schedule, serve; returns at once. Events queued before a restart are run."""
        self.load()
        self._serve()
        self._beat()
        threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        # APScheduler's warnings (a fire skipped or missed) are the daemon's own events
        # already; its errors become JSON lines like the rest.
        route_library_logs("apscheduler", "scheduler", level=logging.ERROR)
        self.scheduler.start()
        self.alarms.start()
        assert self.store is not None  # load()
        for name in self.store.pending.flows_waiting():
            if name in self.flows:
                self._event_run(name)
        self.metrics.up.set(1)
        log.info(
            "daemon_started",
            flows=sorted(self.flows),
            next_runs=self.next_runs(),
            http=f"http://{self.host}:{self.port}",
            state=self.store.safe_url if self.store else None,
            trusted_proxies=list(self.trusted_proxies) if self.behind_proxy else [],
        )

    def request_stop(self, *_: Any) -> None:
        """Signal handler: stop taking runs and orders."""
        self.stopping.set()
        self._wake.set()

    def request_reload(self, *_: Any) -> None:
        """Signal handler: reload at the next tick."""
        self._reload.set()
        self._wake.set()

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def loop(self) -> int:
        """Watch for reloads until stopped; then drain. Returns the exit status."""
        while not self.stopping.is_set():
            self._wake.wait(self.watch_seconds)
            self._wake.clear()
            if self.stopping.is_set():
                break
            if self._reload.is_set() or self._snapshot() != self._mtimes:
                self._reload.clear()
                self._safe_reload()
        return self.shutdown()

    def _safe_reload(self) -> None:
        try:
            changes = self.load()
            log.info("reloaded", flows=sorted(self.flows), **changes, next_runs=self.next_runs())
        except ConfigurationError as exc:
            self._mtimes = self._snapshot()  # do not retry until the files change again
            log.error("reload_refused", reason="config.yaml is invalid; the old flows go on")
            for issue in exc.issues:
                log.error("config_issue", issue=str(issue))
        except Exception as exc:  # noqa: BLE001 - a reload must never kill the daemon
            self._mtimes = self._snapshot()
            log.error("reload_refused", reason=f"{type(exc).__name__}: {exc}")

    def shutdown(self) -> int:
        """Stop the scheduler, let running flows finish within the grace period."""
        self.stopping.set()
        self._forget_me()  # no new run from here: consoles stop linking here at once
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.grace_seconds
        with self._running_lock:
            while self._running and time.monotonic() < deadline:
                self._running_lock.wait(max(0.0, min(0.5, deadline - time.monotonic())))
            left = sorted(self._running)
        self.metrics.up.set(0)
        self.alarms.stop()  # gives the lease up: another daemon or console takes over at once
        if self.http is not None:
            self.http.stop()
        if left:
            log.error("grace_period_over", flows=left, grace_seconds=self.grace_seconds)
            return 1
        if self.store is not None:
            self.store.close()
        log.info("daemon_stopped")
        return 0

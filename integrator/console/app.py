"""The console's Flask application: HTML views and the JSON API over one state store.

Every view's data is built once (``Views``) and shown two ways: rendered by a Jinja2 template,
or answered as JSON under ``/api/``. Whatever is shown is masked first, as a whole, by the
project's redactor (secret-named keys, known secret values, URL credentials): the ERP request
and answer, events, ``log.`` attributes, errors and the run's log alike.

Without users (config.yaml's ``console.users``) it is local and read-only (``guard.HostGuard``),
but for the workbench's runs (``security.LOCAL_WRITES``), taken only from the console's own
pages. With users, ``security`` checks every request against its role table (``ROUTE_ROLES``)
and CSRF, and the actions (release, replay, resolve, run now) go through
``integrator.pipeline.recovery`` and the ledger, each an event naming the user.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from flask import Flask, Response, abort, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from integrator.alarms.config import CONDITIONS
from integrator.alarms.store import AlarmRow, AlarmStore, Lease
from integrator.console.guard import HostGuard
from integrator.console.openapi import document
from integrator.console.reach import NEEDS_DAEMON, reach
from integrator.console.security import (
    LOCAL_WRITES,
    Auth,
    current_user,
    htmx,
    install,
    problem,
)
from integrator.console.workbench import INPUT_BYTES, Workbench, WorkbenchError
from integrator.scheduler.web import BODY_REFUSED
from integrator.state.queries import FlowFigures, Queries, RunFilter, iso, run_json
from integrator.state.runs import RunStatus

if TYPE_CHECKING:
    from integrator.alarms.config import AlarmSpec
    from integrator.alarms.evaluator import Evaluator
    from integrator.connectors.redact import Redactor
    from integrator.console.live import LiveRuns
    from integrator.console.users import ConsoleConfig
    from integrator.pipeline.project import Project
    from integrator.scheduler.schedule import Schedule
    from integrator.state.store import Store

__all__ = ["LIVE_NEEDS_DAEMON", "LOG_BYTES", "STANDALONE_NOTE", "ConsoleSource", "create_app"]

log = structlog.get_logger("integrator.console")

FORM_BODY = 64 * 1024  # the most a login's, an action's or a query's body may send
# the most a workbench run's request may send: its form carries the input and the ERP's answer
# (each at most INPUT_BYTES of JSON) url-encoded, at most 3 bytes for each of theirs, and the
# attributes and field names; the HTTP server reads no more (``body_limit`` below)
WORKBENCH_BODY = 2 * 3 * INPUT_BYTES + FORM_BODY
LOG_BYTES = 256 * 1024  # the most of a run's log a page or an answer shows (its end)
LIVE_ROWS = 50  # the latest orders a run's live part shows (polled every second; the API has all)
WINDOW_MAX = 1000
ID_MAX = 2**63 - 1  # a store's ids are 64-bit: a larger one names no run (not a 500)
LIVE_NEEDS_DAEMON = (
    "the live view needs the daemon: this standalone console reads the state store only, "
    "where a run's progress is written when it ends. Open the console the daemon serves "
    "(integrator daemon, http://127.0.0.1:9108/) to follow a run as it goes"
)
STANDALONE_NOTE = (
    "standalone console: it shows what the state store holds; " + NEEDS_DAEMON + " (no daemon "
    "runs over this state store now; integrator daemon serves this console too)"
)


class BadRequest(Exception):
    """A query parameter the console cannot take: 400 with this message."""


@dataclass
class ConsoleSource:
    """What the console reads, as callables (the daemon's store and flows change on reload).

    ``where``: ``daemon`` or ``standalone``; ``window``: how many of each flow's latest runs
    the error rate and average run time are over (the dashboard's default).

    Two projects, on purpose: ``project`` is the one the console acts with (in the daemon, the
    one it runs, so a release or a resolve uses the same ledger policy as its runs);
    ``workbench`` loads the files afresh on each call, without secrets, so what is tested is
    what the files say now (a broken edit shows, the daemon's flows are untouched)."""

    store: Callable[[], Store]
    redactor: Callable[[], Redactor]
    log_dir: Callable[[], Path]
    schedules: Callable[[], Mapping[str, Schedule]]
    where: str = "standalone"
    window: int = 20
    console: Callable[[], ConsoleConfig | None] = lambda: None  # users: login and actions
    project: Callable[[], Project] | None = None  # the project (release, resolve)
    runnable: Callable[[], Project] | None = None  # the project with its secrets (replay)
    workbench: Callable[[], Project] | None = None  # the project's files as they are now
    live: LiveRuns | None = None  # the daemon's runs in progress (None: standalone)
    run_now: Callable[[str], str] | None = None  # the daemon: queue a run of the flow
    # each flow's declared alarms (as the project the console shows declares them)
    alarm_specs: Callable[[], Mapping[str, Sequence[AlarmSpec]]] = lambda: {}
    evaluator: Evaluator | None = None  # this process's alarm evaluator (None: it has none)
    evaluator_note: str | None = None  # why this process evaluates no alarms, if it does not


class Views:
    """Each view's data, masked, as JSON-ready values."""

    def __init__(self, source: ConsoleSource) -> None:
        self.source = source

    def _q(self) -> Queries:
        return Queries(self.source.store())

    def _mask(self, value: dict[str, Any]) -> dict[str, Any]:
        return dict(self.source.redactor().redact(value))

    def flows(self, window: int) -> dict[str, Any]:
        schedules = dict(self.source.schedules())
        q = self._q()
        names = sorted(set(schedules) | set(q.flow_names()))
        now = dt.datetime.now(dt.UTC)
        specs = dict(self.source.alarm_specs())
        rows = self._alarm_rows(None)
        out = []
        for figures in q.flow_figures(names, window):
            answer = self._flow(figures, schedules.get(figures.flow), now)
            answer.update(_flow_alarms(figures.flow, specs.get(figures.flow, ()), rows))
            out.append(answer)
        result: dict[str, Any] = {"window": window, "where": self.source.where, "flows": out}
        if self.source.where == "standalone":
            found = reach(self.source)
            result["daemon"] = None if found is None else found.as_json()
            result["note"] = (
                STANDALONE_NOTE if found is None else f"standalone console: {found.note()}"
            )
        return self._mask(result)

    def _alarm_rows(self, flow: str | None) -> dict[tuple[str, str], AlarmRow]:
        return {(r.flow, r.alarm): r for r in AlarmStore(self.source.store()).states(flow)}

    @staticmethod
    def _flow(f: FlowFigures, schedule: Schedule | None, now: dt.datetime) -> dict[str, Any]:
        answer = f.as_json()
        if schedule is None:
            answer["schedule"] = None  # runs in the store, no flow file defines it now
            answer["next_fire"] = None
        else:
            answer["schedule"] = schedule.describe()
            times = schedule.next_times(1, now)
            answer["next_fire"] = (
                times[0].astimezone(dt.UTC).isoformat(timespec="seconds") if (times) else None
            )
        return answer

    def flow(self, name: str, window: int) -> dict[str, Any] | None:
        schedules = dict(self.source.schedules())
        q = self._q()
        if name not in schedules and name not in q.flow_names():
            return None
        (figures,) = q.flow_figures([name], window)
        answer = self._flow(figures, schedules.get(name), dt.datetime.now(dt.UTC))
        answer["window"] = window
        specs = dict(self.source.alarm_specs()).get(name, ())
        answer.update(_flow_alarms(name, specs, self._alarm_rows(name)))
        return self._mask(answer)

    def alarms(self, flow: str | None, limit: int) -> dict[str, Any]:
        """Every declared alarm (of ``flow``) with its state, who evaluates them, and the
        latest notices (sent, failed to send, recoveries), newest first."""
        store = self.source.store()
        specs = dict(self.source.alarm_specs())
        rows = self._alarm_rows(flow)
        listed = []
        for name in sorted(specs):
            if flow not in (None, name):
                continue
            for spec in specs[name]:
                listed.append({"flow": name, **_alarm(spec, rows.get((name, spec.name)))})
        notices = [
            {
                "flow": n["flow"],
                "alarm": n["alarm"],
                "at": _at(n["at"]),
                "kind": n["kind"],
                "notifier": n["notifier"],
                "ok": bool(n["ok"]),
                "detail": n["detail"] or "",
            }
            for n in AlarmStore(store).notices(flow, limit)
        ]
        return self._mask(
            {
                "where": self.source.where,
                "flow": flow,
                "evaluator": self._evaluator(store),
                "alarms": listed,
                "notices": notices,
            }
        )

    def _evaluator(self, store: Store) -> dict[str, Any]:
        """Who evaluates the alarms: this process (its interval), the lease's holder now."""
        ev = self.source.evaluator
        current = Lease(store).current()
        held = current is not None and current[1] > dt.datetime.now(dt.UTC).timestamp()
        here = ev is not None and held and current is not None and current[0] == ev.holder
        return {
            "interval_seconds": ev.interval if ev is not None else None,
            "note": self.source.evaluator_note,
            "holder": current[0] if held and current else None,
            "until": _at(current[1]) if held and current else None,
            "this_process": here,
        }

    def runs(self, f: RunFilter) -> dict[str, Any]:
        rows = self._q().runs(f)
        more = len(rows) == f.limit and bool(rows)
        return self._mask(
            {
                "runs": [run_json(r) for r in rows],
                "next_before": rows[-1]["id"] if more else None,
            }
        )

    def _run_row(self, run_id: int) -> dict[str, Any] | None:
        return self._q().run(run_id) if run_id <= ID_MAX else None

    def run(self, run_id: int) -> dict[str, Any] | None:
        row = self._run_row(run_id)
        return None if row is None else dict(self._mask(run_json(row)))

    def run_log(self, run_id: int, limit: int = LOG_BYTES) -> dict[str, Any] | None:
        """The end of a run's JSON-lines log (at most ``limit`` bytes, whole lines), masked."""
        row = self._run_row(run_id)
        if row is None:
            return None
        root = self.source.log_dir().resolve()
        path = (root / str(row["flow"]) / f"run-{run_id}.jsonl").resolve()
        answer: dict[str, Any] = {"run": run_id, "lines": [], "size": 0, "truncated": False}
        if not path.is_relative_to(root):  # a flow name with ../ in a hostile store
            answer["note"] = "the run's flow name is not a folder name: no log"
            return answer
        try:
            with path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                start = max(0, size - limit)
                fh.seek(start)
                data = fh.read(limit)
        except FileNotFoundError:
            answer["note"] = "no log file (a dry run, or the logs folder was cleaned)"
            return answer
        except OSError as exc:
            answer["note"] = f"the log cannot be read: {exc.strerror or exc}"
            return answer
        if start > 0:
            data = data.partition(b"\n")[2]  # the first line was cut: drop it whole
        lines: list[Any] = []
        for raw in data.splitlines():
            text = raw.decode("utf-8", errors="replace")
            try:
                lines.append(json.loads(text))
            except ValueError:
                lines.append(text)
        answer.update(lines=lines, size=size, truncated=start > 0)
        return self._mask(answer)

    def live_runs(self) -> dict[str, Any]:
        live = self.source.live
        if live is None:
            found = reach(self.source)
            if found is None:
                return {"where": self.source.where, "runs": [], "note": LIVE_NEEDS_DAEMON}
            return self._mask(
                {
                    "where": self.source.where,
                    "runs": [],
                    "note": found.note(),
                    "daemon": found.as_json(),
                }
            )
        return self._mask({"where": self.source.where, "runs": live.running()})

    def live(self, run_id: int, after: int = 0, limit: int | None = None) -> dict[str, Any] | None:
        """A run in progress from the daemon's memory; the stored run once it has ended or
        when no daemon of this console runs it. ``limit``: at most that many latest orders."""
        live = self.source.live
        snap = None if live is None else live.snapshot(run_id, after, limit)
        row = self._run_row(run_id)
        if row is None and snap is None:
            return None
        answer: dict[str, Any] = {
            "source": "live" if snap is not None and snap["status"] == "running" else "store",
            "run": run_json(row) if row is not None else None,
            "live": snap,
        }
        if answer["run"] is None:  # published before its row is readable here: not yet
            answer["source"] = "live"
        if answer["source"] == "store" and row is not None and row["status"] == "running":
            found = reach(self.source) if live is None else None
            if found is not None:
                answer["note"] = found.note()
                answer["daemon"] = {**found.as_json(), "run_url": found.run_url(run_id)}
            elif live is None:
                answer["note"] = LIVE_NEEDS_DAEMON
            else:
                answer["note"] = (
                    "this run is not one of this daemon's: another process runs it, and "
                    "its progress is written when it ends"
                )
        return self._mask(answer)

    def find(self, text: str) -> dict[str, Any]:
        rows = self._q().find_orders(text) if text else []
        return self._mask(
            {
                "query": text,
                "orders": [
                    {
                        "flow": r["flow"],
                        "number": r["order_number"],
                        "state": r["state"],
                        "attempts": r["attempts"],
                        "updated_at": iso(r["updated_at"]),
                    }
                    for r in rows
                ],
            }
        )

    def timeline(self, number: str) -> dict[str, Any] | None:
        h = self._q().timeline(number)
        if not h["journal"]:
            return None
        journal = []
        for j in h["journal"]:
            journal.append(
                {
                    "flow": j["flow"],
                    "order_pk": j["order_pk"],
                    "state": j["state"],
                    "attempts": j["attempts"],
                    "error_kind": j["error_kind"],
                    "last_error": j["last_error"],
                    "erp_ref": j["erp_ref"],
                    "target_id": j["target_id"],
                    "held_state": j["held_state"],
                    "updated_at": iso(j["updated_at"]),
                    "run_id": j["run_id"],
                    "erp_request": _stored(j["request_json"]),
                    "erp_answer": _stored(j["response_json"]),
                }
            )
        answer = {
            "number": number,
            "journal": journal,
            "events": [
                {
                    "flow": e["flow"],
                    "at": iso(e["at"]),
                    "run_id": e["run_id"],
                    "state": e["state"],
                    "fact": e["fact"],
                    "message": e["message"],
                }
                for e in h["events"]
            ],
            "log": [
                {
                    "flow": r["flow"],
                    "at": iso(r["at"]),
                    "run_id": r["run_id"],
                    "key": r["key"],
                    "value": r["value"],
                }
                for r in h["log"]
            ],
            "deliveries": [
                {
                    "flow": d["flow"],
                    "at": iso(d["at"]),
                    "run_id": d["run_id"],
                    "kind": d["kind"],
                    "connector": d["connector"],
                    "connector_id": d["connector_id"],
                    "note": d["note"],
                }
                for d in h["deliveries"]
            ],
        }
        return self._mask(answer)

    def failures(self, flow: str | None) -> dict[str, Any]:
        rows = self._q().failures(flow)
        return self._mask(
            {
                "groups": [
                    {
                        "flow": r["flow"],
                        "state": r["state"],
                        "error_kind": r["error_kind"],
                        "last_error": r["last_error"],
                        "orders": int(r["orders"]),
                        "example": r["example"],
                        "latest": iso(r["latest"]),
                    }
                    for r in rows
                ]
            }
        )


def _at(ts: float | None) -> str | None:
    """A unix time (the alarm tables') as ISO 8601 in UTC."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).isoformat(timespec="seconds")


_UNITS = {"percent": "%", "duration": "s", "count": "orders", "none": "runs"}


def _alarm(spec: AlarmSpec, row: AlarmRow | None) -> dict[str, Any]:
    """One declared alarm and its state as the store holds it (``unknown``: not evaluated)."""
    failing = spec.condition == "connector_failing"
    unit = _UNITS[CONDITIONS[spec.condition][0]]
    threshold = float(spec.runs) if failing else spec.above
    value = row.value if row is not None else None
    return {
        "alarm": spec.name,
        "condition": spec.condition,
        "describe": spec.describe(),
        "threshold": threshold,
        "unit": unit,
        "runs": spec.runs,
        "cool_off_seconds": spec.cool_off,
        "notify": list(spec.notify),
        "state": row.state if row is not None else "unknown",
        "since": _at(row.since) if row is not None else None,
        "value": value,
        "measured": _measured(spec, value, unit, threshold) if value is not None else None,
        "message": row.message if row is not None else "not evaluated yet",
        "evaluated_at": _at(row.evaluated_at) if row is not None else None,
        "notified": row.notified_state if row is not None else None,
        "notified_at": _at(row.notified_at) if row is not None else None,
    }


def _measured(spec: AlarmSpec, value: float, unit: str, threshold: float) -> str:
    """The reading against the threshold, for people: ``100 % (fires above 20 %)``."""
    if spec.condition == "connector_failing":
        return f"{value:.0f} of the last {spec.runs} runs stopped (fires when all of them did)"
    if unit == "s":
        return f"{_seconds(value)} (fires above {_seconds(threshold)})"
    if unit == "%":
        return f"{value:.0f} % (fires above {threshold:g} %)"
    return f"{value:.0f} {unit} (fires above {threshold:g})"


def _flow_alarms(
    flow: str, specs: Sequence[AlarmSpec], rows: Mapping[tuple[str, str], AlarmRow]
) -> dict[str, Any]:
    """A flow's alarm state for the dashboard: ``none`` (it declares none), ``firing`` (any),
    ``unknown`` (one not evaluated yet, none firing) or ``ok``; and each alarm."""
    alarms = [_alarm(spec, rows.get((flow, spec.name))) for spec in specs]
    states = {a["state"] for a in alarms}
    state = (
        "none"
        if not alarms
        else "firing"
        if "firing" in states
        else "unknown"
        if "unknown" in states
        else "ok"
    )
    return {"alarm_state": state, "alarms": alarms}


def _stored(text: str | None) -> Any:
    """A stored JSON column as a value (its text when it is not JSON)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


# ------------------------------------------------------------------ parameters
def _int(name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.args.get(name, "").strip()
    if not text:
        return default
    # ASCII digits only: "²" is a digit to str.isdigit and not to int(); and a few of them,
    # not the thousands int() refuses to read
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(high))
    if not digits or not low <= int(text) <= high:
        raise BadRequest(f"?{name}= takes a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _date(name: str) -> dt.datetime | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"?{name}= takes a date or time in ISO 8601 (2026-12-01 or 2026-12-01T08:00), "
            f"not {text!r}"
        ) from None
    # the store keeps UTC: a time with another zone is compared as the same instant in UTC
    try:
        return at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)
    except OverflowError:  # 9999-12-31T23:59-23:59 is after the last instant there is
        raise BadRequest(
            f"?{name}= is out of range: its instant in UTC falls outside the years 1-9999"
        ) from None


def _run_filter() -> RunFilter:
    status = request.args.get("status", "").strip() or None
    if status is not None and status not in {s.value for s in RunStatus}:
        raise BadRequest(
            f"?status= takes one of {', '.join(s.value for s in RunStatus)}, not {status!r}"
        )
    return RunFilter(
        flow=request.args.get("flow", "").strip() or None,
        status=status,
        since=_date("since"),
        until=_date("until"),
        before=_int("before", None, 1, 2**62),
        limit=_int("limit", 50, 1, 500) or 50,
    )


def _json_value() -> Any:
    """The request's JSON (None when it is not JSON); nesting too deep for the parser is a
    400, not the RecursionError Flask lets through as a 500."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("the JSON body nests too deeply to be read") from None


def _json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 saying what was expected."""
    value = _json_value()
    if not isinstance(value, dict):
        raise BadRequest(
            "expected a JSON object body (Content-Type: application/json), e.g. "
            '{"flow": "order_flow", "stage": "flow", "input": {...}}'
        )
    return value


def _seconds(value: Any) -> str:
    """A duration for people: 850 ms, 12.5 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    if value is None:
        return "-"
    s = float(value)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


# ------------------------------------------------------------------------ app
def create_app(
    source: ConsoleSource,
    *,
    auth: Auth | None = None,
    public_host: str | None = None,
) -> HostGuard:
    """The console as a WSGI application, behind its guard.

    ``auth``: the login state (default: from ``source.console``, the real clock);
    (behind a proxy, ``httpserver.WebServer`` trusts its ``X-Forwarded-For``/``-Proto``);
    ``public_host``: the Host header the proxy passes on (besides loopback names)."""
    from integrator.console.actions import ActionRefused, Actions, NeedsDaemon

    app = Flask(__name__)
    # a login or an action's form is small; the workbench's input (1 MiB) and its form's
    # encoding are not (``big_body`` below)
    app.config.update(JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=FORM_BODY)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # flask's default provider has it
    app.jinja_env.filters["seconds"] = _seconds
    app.jinja_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
    app.jinja_env.filters["percent"] = lambda v: "-" if v is None else f"{v * 100:.0f} %"
    views = Views(source)
    actions = Actions(source)
    auth = auth or Auth(source.console)
    bench = Workbench(source.workbench, source.redactor)

    def window() -> int:
        return _int("window", source.window, 1, WINDOW_MAX) or source.window

    def page(template: str, **values: Any) -> str:
        return render_template(template, **{"where": source.where, **values})

    @app.before_request
    def big_body() -> None:  # before ``install``'s checks, which may read the form
        refused = request.environ.get(BODY_REFUSED)
        if refused is not None:  # the server read none of a body over ``body_limit``
            raise RequestEntityTooLarge(str(refused))
        if request.endpoint in LOCAL_WRITES:
            request.max_content_length = WORKBENCH_BODY

    install(app, auth, page)

    # ------------------------------------------------------------ HTML
    @app.get("/")
    def dashboard() -> str:
        return page("dashboard.html", **views.flows(window()))

    @app.get("/runs")
    def runs_page() -> str:
        f = _run_filter()
        data = views.runs(f)
        names = sorted(set(source.schedules()) | set(Queries(source.store()).flow_names()))
        values = {
            **data,
            "f": f,
            "flows": names,
            "statuses": [s.value for s in RunStatus],
            "args": request.args,
        }
        if request.headers.get("HX-Request") == "true":
            return page("_runs_table.html", **values)
        return page("runs.html", **values)

    @app.get("/runs/<int:run_id>")
    def run_page(run_id: int) -> str:
        run = views.run(run_id)
        if run is None:
            abort(404, f"there is no run {run_id} in the state store")
        live = views.live(run_id, limit=LIVE_ROWS) if run["status"] == "running" else None
        return page("run.html", run=run, log=views.run_log(run_id), log_bytes=LOG_BYTES, live=live)

    @app.get("/runs/<int:run_id>/live")
    def run_live_fragment(run_id: int) -> Response | str:
        """The live part of a run's page, polled by htmx while the run goes; once the run
        has ended the page reloads itself to show the stored run."""
        found = views.live(run_id, limit=LIVE_ROWS)
        if found is None:
            abort(404, f"there is no run {run_id} in the state store")
        polled = request.headers.get("HX-Request") == "true"
        stored = found["run"]
        if polled and found["source"] == "store" and stored and stored["status"] != "running":
            answer = Response("", 200)
            answer.headers["HX-Refresh"] = "true"
            return answer
        return page("_live.html", **found)

    @app.get("/orders")
    def orders_page() -> str:
        text = request.args.get("q", "").strip()[:100]
        return page("orders.html", **views.find(text))

    @app.get("/orders/<path:number>")
    def order_page(number: str) -> str:
        found = views.timeline(number)
        if found is None:
            abort(404, f"order {number} is not in the state store: no run has read it yet")
        return page("order.html", **found)

    @app.get("/alarms")
    def alarms_page() -> str:
        flow = request.args.get("flow", "").strip() or None
        return page("alarms.html", **views.alarms(flow, _int("limit", 50, 1, 500) or 50))

    @app.get("/failures")
    def failures_page() -> str:
        flow = request.args.get("flow", "").strip() or None
        return page("failures.html", flow=flow, **views.failures(flow))

    # ------------------------------------------------------------- API
    @app.get("/api/")
    @app.get("/api/openapi.json")
    def api_document() -> Response:
        return jsonify(document())

    @app.get("/api/flows")
    def api_flows() -> Response:
        return jsonify(views.flows(window()))

    @app.get("/api/flows/<name>")
    def api_flow(name: str) -> Response:
        found = views.flow(name, window())
        if found is None:
            abort(404, f"no flow named {name!r} in the project or the state store")
        return jsonify(found)

    @app.get("/api/runs")
    def api_runs() -> Response:
        return jsonify(views.runs(_run_filter()))

    @app.get("/api/runs/<int:run_id>")
    def api_run(run_id: int) -> Response:
        found = views.run(run_id)
        if found is None:
            abort(404, f"there is no run {run_id} in the state store")
        return jsonify(found)

    @app.get("/api/runs/<int:run_id>/log")
    def api_run_log(run_id: int) -> Response:
        found = views.run_log(run_id)
        if found is None:
            abort(404, f"there is no run {run_id} in the state store")
        return jsonify(found)

    @app.get("/api/runs/<int:run_id>/live")
    def api_run_live(run_id: int) -> Response:
        found = views.live(run_id, _int("after", 0, 0, 2**62) or 0)
        if found is None:
            abort(404, f"there is no run {run_id} in the state store")
        return jsonify(found)

    @app.get("/api/live")
    def api_live() -> Response:
        return jsonify(views.live_runs())

    @app.get("/api/orders")
    def api_orders() -> Response:
        return jsonify(views.find(request.args.get("q", "").strip()[:100]))

    @app.get("/api/orders/<path:number>")
    def api_order(number: str) -> Response:
        found = views.timeline(number)
        if found is None:
            abort(404, f"order {number} is not in the state store: no run has read it yet")
        return jsonify(found)

    @app.get("/api/failures")
    def api_failures() -> Response:
        return jsonify(views.failures(request.args.get("flow", "").strip() or None))

    @app.get("/api/alarms")
    def api_alarms() -> Response:
        flow = request.args.get("flow", "").strip() or None
        return jsonify(views.alarms(flow, _int("limit", 50, 1, 500) or 50))

    @app.get("/api/me")
    def api_me() -> Response:
        user = current_user()
        return jsonify(None if user is None else {"name": user.name, "role": user.role})

    @app.get("/api/users")
    def api_users() -> Response:
        cfg = source.console()
        users = cfg.users if cfg is not None else ()
        return jsonify(
            {
                "users": [
                    {
                        "name": u.name,
                        "role": u.role,
                        "password": bool(u.password_hash),
                        "api_token": bool(u.api_token),
                    }
                    for u in users
                ]
            }
        )

    # --------------------------------------------------------- actions
    def _params() -> dict[str, str]:
        if request.is_json:
            data = _json_value()
            if not isinstance(data, dict):
                raise BadRequest("the body must be a JSON object")
            for k, v in data.items():
                if isinstance(v, dict | list):  # str() of it would pass for a name
                    raise BadRequest(f"{k!r}: expected text, a number or a boolean, not JSON")
            return {str(k): "" if v is None else str(v).strip() for k, v in data.items()}
        return {k: v.strip() for k, v in request.form.items()}

    def _act(name: str, api: bool) -> Any:
        user = current_user()
        if user is None:  # the role check lets no action through without one: a second net
            abort(401)
        p = _params()

        def need(key: str) -> str:
            value = p.get(key, "")
            if not value:
                raise BadRequest(f"{name} needs {key!r}")
            if len(value) > 1000 or not value.isprintable():
                raise BadRequest(f"{key!r}: expected printable text of at most 1000 characters")
            return value

        def opt(key: str) -> str | None:
            return need(key) if p.get(key) else None

        try:
            if name == "release":
                done = actions.release(user.name, need("flow"), opt("reason"), opt("note"))
            elif name == "resolve":
                done = actions.resolve(
                    user.name, need("number"), opt("flow"), need("as"), opt("erp_ref")
                )
            elif name == "replay":
                force = p.get("force", "").lower() in ("1", "true", "yes", "on")
                done = actions.replay(user.name, need("number"), opt("flow"), force)
            else:
                done = actions.run(user.name, need("flow"))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        except ActionRefused as exc:
            detail = str(source.redactor().scrub(str(exc)))
            daemon = exc.url if isinstance(exc, NeedsDaemon) else None
            if api:
                answer = jsonify({"detail": detail, **({"daemon": daemon} if daemon else {})})
                answer.status_code = 409
                return answer
            return page("action.html", ok=False, message=detail, back=_back(p), daemon=daemon), 409
        done = source.redactor().redact(done)
        if api:
            return jsonify(done)
        return page("action.html", ok=True, message=done["message"], back=_back(p))

    def _back(p: dict[str, str]) -> str:
        if p.get("number"):
            return "/orders/" + quote(p["number"], safe="")
        if p.get("flow"):
            return "/failures?flow=" + quote(p["flow"], safe="")
        return "/"

    for _name in ("release", "replay", "resolve", "run"):
        app.add_url_rule(
            f"/actions/{_name}",
            f"action_{_name}",
            (lambda n: lambda: _act(n, api=False))(_name),
            methods=["POST"],
        )
        app.add_url_rule(
            f"/api/actions/{_name}",
            f"api_action_{_name}",
            (lambda n: lambda: _act(n, api=True))(_name),
            methods=["POST"],
        )

    # ------------------------------------------------------- workbench
    @app.get("/workbench")
    def workbench_page() -> str:
        try:
            catalogue = bench.catalogue()
        except WorkbenchError as exc:
            catalogue = {"flows": [], "problem": str(exc)}
        return page("workbench.html", **catalogue, args=request.args)

    @app.post("/workbench/run")
    def workbench_run() -> str:
        try:
            answer = bench.run(request.form.to_dict())
        except WorkbenchError as exc:
            return page("_workbench_result.html", problem=str(exc))
        return page("_workbench_result.html", answer=answer)

    @app.post("/workbench/golden")
    def workbench_golden() -> str:
        try:
            answer = bench.golden(request.form.get("flow", "").strip() or None)
        except WorkbenchError as exc:
            return page("_workbench_golden.html", problem=str(exc))
        return page("_workbench_golden.html", golden=answer)

    @app.get("/api/workbench")
    def api_workbench() -> Response:
        return jsonify(bench.catalogue())

    @app.post("/api/workbench/run")
    def api_workbench_run() -> Response:
        return jsonify(bench.run(_json_body()))

    @app.post("/api/workbench/golden")
    def api_workbench_golden() -> Response:
        flow = _json_body().get("flow")
        if flow is not None and not isinstance(flow, str):
            raise BadRequest("flow: a flow's name, or leave it out for every flow")
        return jsonify(bench.golden(flow))

    @app.errorhandler(WorkbenchError)
    def workbench_error(exc: WorkbenchError) -> Response | tuple[str, int]:
        return _error(exc.status, str(source.redactor().scrub(str(exc))))

    # ---------------------------------------------------------- errors
    def _error(status: int, detail: str) -> Response | tuple[str, int]:
        if htmx():  # shown where the htmx answer goes, not a whole page inside a page
            return problem(status, detail)
        if request.path.startswith("/api/"):
            answer = jsonify({"detail": detail})
            answer.status_code = status
            return answer
        return page("error.html", status=status, detail=detail), status

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> Response | tuple[str, int]:
        return _error(400, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | tuple[str, int]:
        described = exc.code in (404, 413) and exc.description
        detail = exc.description if described else exc.name
        if exc.code == 404 and "not found on the server" in str(detail):
            detail = "no such page; try / (dashboard), /runs, /orders, /failures, /alarms or /api/"
        answer = make_response(_error(exc.code or 500, str(source.redactor().scrub(str(detail)))))
        allow = dict(exc.get_headers()).get("Allow")
        if allow:  # a 405 names the methods the path takes (RFC 9110), in a stable order
            answer.headers["Allow"] = ", ".join(sorted(m.strip() for m in allow.split(",")))
        return answer

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response | tuple[str, int]:
        log.error(
            "console_handler_failed",
            path=request.path,
            error=source.redactor().scrub(f"{type(exc).__name__}: {exc}"),
        )
        return _error(500, "internal error; see the log")

    @app.after_request
    def headers(answer: Response) -> Response:
        answer.headers["Cache-Control"] = "no-store"
        answer.headers["X-Content-Type-Options"] = "nosniff"
        answer.headers["X-Frame-Options"] = "DENY"
        answer.headers["Referrer-Policy"] = "no-referrer"
        answer.headers["Content-Security-Policy"] = (
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        return answer

    urls = app.url_map.bind("localhost")

    def local_write(path: str) -> bool:
        """A POST to ``path`` reaches a route the console takes without users."""
        try:
            endpoint, _args = urls.match(path, method="POST")
        except HTTPException:
            return False
        return endpoint in LOCAL_WRITES

    def methods(path: str) -> list[str]:
        """The methods the routes of ``path`` take (none: no route matches it)."""
        try:
            return [str(m) for m in urls.allowed_methods(path)]
        except HTTPException:
            return []

    def body_limit(_method: str, path: str) -> int:
        """The most body the server reads for a request to ``path``."""
        return WORKBENCH_BODY if local_write(path) else FORM_BODY

    return HostGuard(
        app,
        writes=lambda: auth.enabled,
        public_host=public_host,
        local_write=local_write,
        methods=methods,
        body_limit=body_limit,
    )

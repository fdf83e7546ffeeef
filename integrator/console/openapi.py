"""The console's JSON API described as OpenAPI 3.1 (served at ``/api/openapi.json``).

Reads: flows, runs (and a run's log), orders (search and timeline), failures, alarms (and
their notices); who am I, the users (admin). Actions (POST): release, replay, resolve, run
now. Every answer is masked by the project's redactor before it is sent.
"""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_ERROR = {"$ref": "#/components/responses/Error"}


def _get(
    summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
            "400": _ERROR,
            "401": _ERROR,  # with users: no session, no token
            "403": _ERROR,  # with users: a role below the route's
            "404": _ERROR,
            "421": _ERROR,
        },
    }
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(
    summary: str,
    body: dict[str, Any],
    result: dict[str, Any],
    role: str,
    errors: tuple[int, ...],
    form: bool = False,
    local: bool = False,
) -> dict[str, Any]:
    """A state-changing request: a JSON body (``form``: or a form) in, a JSON answer out.

    ``role``: the least role it needs with users (``x-requires``; the console enforces
    ``security.ROUTE_ROLES``, which the tests hold this to); with a session cookie it needs
    the session's CSRF token. ``local``: taken without users too (``security.LOCAL_WRITES``),
    from the console's own pages only."""
    where = (
        "Without users: from the console's own pages only (Content-Type: application/json, "
        "an Origin header, when sent, on loopback)."
        if local
        else "Without users there is none."
    )
    content = {"application/json": {"schema": body}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": body}
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs the {role} role. With a session cookie, send the session's "
        f"CSRF token as X-CSRF-Token; with Authorization: Bearer, none. {where}",
        "x-requires": {"role": role, "state_changing": True},
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {"description": "Done", "content": {"application/json": {"schema": result}}},
            **{str(code): _ERROR for code in errors},
        },
    }
    return {"post": op}


def _action(summary: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An action (operator role and above): its fields as JSON or a form."""
    body = {"type": "object", "properties": fields, "required": required}
    return _post(summary, body, _ref("ActionResult"), "operator", _ACTION_ERRORS, form=True)


_ACTION_ERRORS = (400, 401, 403, 409, 413)
_BENCH_ERRORS = (400, 401, 403, 404, 413, 429)
_TEXT = {"type": "string", "maxLength": 1000}
_NAME = {**_TEXT, "minLength": 1}  # a required field: empty is as missing
_ID_MAX = 2**62  # the most ?before= and ?after= take


def _q(
    name: str, kind: str, text: str, low: int | None = None, high: int | None = None
) -> dict[str, Any]:
    """A query parameter; an integer's ``low``-``high`` are the console's (``app._int``)."""
    schema: dict[str, Any] = {"type": kind}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return {"name": name, "in": "query", "required": False, "description": text, "schema": schema}


def _p(name: str, kind: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": text,
            "schema": {"type": kind}}  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}

SCHEMAS: dict[str, Any] = {
    "ActionResult": {
        "type": "object",
        "required": ["action", "by", "message"],
        "properties": {
            "action": {"type": "string", "enum": ["release", "replay", "resolve", "run"]},
            "by": {"type": "string", "description": "the user who acted (in the events)"},
            "message": {"type": "string"},
            "flow": {"type": "string"},
            "number": {"type": "string"},
            "released": {"type": "array", "items": {"type": "string"}},
            "kept": {"type": "array", "items": {"type": "string"}},
            "run": {"type": "integer"},
            "status": {"type": "string"},
            "ok": {"type": "integer"},
            "failed": {"type": "integer"},
        },
    },
    "Me": {
        "type": ["object", "null"],
        "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
    },
    "Users": {
        "type": "object",
        "properties": {
            "users": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
                        "password": {"type": "boolean"},
                        "api_token": {"type": "boolean"},
                    },
                },
            }
        },
    },
    "WorkbenchFlow": {
        "type": "object",
        "required": ["flow", "stages", "recorded"],
        "properties": {
            "flow": {"type": "string"},
            "stages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "stage"],
                    "properties": {"index": {"type": "integer"}, "stage": {"type": "string"}},
                },
            },
            "recorded": {"type": "array", "items": {"type": "string"}},
        },
    },
    "WorkbenchRun": {
        "type": "object",
        "required": ["flow"],
        "properties": {
            "flow": {"type": "string"},
            "stage": {
                "type": ["string", "integer"],
                "description": '"flow" (the whole flow, the default) or a stage\'s index',
            },
            "input": {"description": "the order (JSON), as integrator orders export writes it"},
            "recorded": {"type": "string", "description": "CASE or FLOW/CASE of flows/tests/"},
            "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
            "response": {"description": "the whole flow: the ERP's answer to the write"},
            "status": {"type": "integer", "description": "its status code (default 201)"},
        },
    },
    "WorkbenchResult": {
        "type": "object",
        "required": ["flow", "stage", "kind", "result_data", "attributes"],
        "properties": {
            "flow": {"type": "string"},
            "stage": {"type": "string"},
            "stage_name": {"type": "string"},
            "kind": {"type": "string", "enum": ["script", "mapping", "flow"]},
            "runtime": {"type": "string"},
            "result_data": {"description": "a value cut to 256 KiB of JSON is a note"},
            "attributes": {"type": "object"},
            "erp_payload": {},
            "erp_response": {},
            "mapping_data": {},
            "stages": {"type": "array", "items": {"type": "object"}},
            "state": {"type": "string"},
            "error": _STR_OR_NULL,
            "failure": {"type": ["object", "null"]},
        },
    },
    "GoldenCase": {
        "type": "object",
        "required": ["flow", "case", "status"],
        "properties": {
            "flow": {"type": "string"},
            "case": {"type": "string"},
            "status": {"type": "string", "enum": ["ok", "fail"]},
            "reason": {"type": "string"},
            "diff": {"type": "array", "items": {"type": "string"}},
        },
    },
    "LiveRun": {
        "type": "object",
        "required": ["run", "flow", "status", "ok", "failed", "skipped", "done", "last_seq"],
        "properties": {
            "run": {"type": "integer"},
            "flow": {"type": "string"},
            "status": {"type": "string", "description": "running, or how it ended"},
            "started_at": {"type": "string", "format": "date-time"},
            "seconds": {"type": "number"},
            "total": {**_INT_OR_NULL, "description": "the listing's count, when it gave one"},
            "ok": {"type": "integer"},
            "failed": {"type": "integer"},
            "skipped": {"type": "integer"},
            "done": {"type": "integer"},
            "last_seq": {"type": "integer"},
            "kept": {"type": "integer", "description": "the most orders kept in memory"},
            "orders": {
                "type": "array",
                "description": "the latest orders that ended, newest first",
                "items": {
                    "type": "object",
                    "required": ["seq", "number", "status", "state"],
                    "properties": {
                        "seq": {"type": "integer"},
                        "number": {"type": "string"},
                        "status": {"type": "string", "enum": ["ok", "failed", "skipped"]},
                        "state": {"type": "string"},
                        "message": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
    "LiveAnswer": {
        "type": "object",
        "required": ["source", "run"],
        "properties": {
            "source": {
                "type": "string",
                "enum": ["live", "store"],
                "description": "live: the daemon's memory, the run in progress; store: the "
                "stored run (it has ended, or no daemon of this console runs it)",
            },
            "run": {"anyOf": [_ref("Run"), {"type": "null"}]},
            "live": {"anyOf": [_ref("LiveRun"), {"type": "null"}]},
            "note": {"type": "string"},
            "daemon": _ref("Daemon"),
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "flow", "status", "started_at"],
        "properties": {
            "id": {"type": "integer"},
            "flow": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["running", "ok", "partial", "failed", "interrupted"],
            },
            "started_at": {"type": "string", "format": "date-time"},
            "ended_at": _STR_OR_NULL,
            "duration_seconds": _NUM_OR_NULL,
            "orders_ok": {"type": "integer"},
            "orders_failed": {"type": "integer"},
            "orders_skipped": {"type": "integer"},
            "skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
            "dry_run": {"type": "boolean"},
            "error": _STR_OR_NULL,
            "oldest_unsent_seconds": _NUM_OR_NULL,
        },
    },
    "Flow": {
        "type": "object",
        "required": ["flow", "quarantined", "states"],
        "properties": {
            "flow": {"type": "string"},
            "schedule": {**_STR_OR_NULL, "description": "null: no flow file defines it now"},
            "next_fire": {**_STR_OR_NULL, "description": "ISO 8601, UTC"},
            "last_run": {"oneOf": [_ref("Run"), {"type": "null"}]},
            "window_runs": {"type": "integer", "description": "finished runs the rates are over"},
            "error_rate": {
                **_NUM_OR_NULL,
                "description": "share of those runs that ended failed, partial or interrupted",
            },
            "average_run_seconds": _NUM_OR_NULL,
            "oldest_unsent_seconds": {
                **_NUM_OR_NULL,
                "description": "age of the oldest unsent order, as the latest run that read "
                "the whole source list measured it",
            },
            "oldest_unsent_run": _INT_OR_NULL,
            "quarantined": {"type": "integer"},
            "states": {"type": "object", "additionalProperties": {"type": "integer"}},
            "alarm_state": {
                "type": "string",
                "enum": ["none", "ok", "unknown", "firing"],
                "description": "none: the flow declares no alarms; firing: one of them fires; "
                "unknown: one is not evaluated yet",
            },
            "alarms": {"type": "array", "items": _ref("FlowAlarm")},
        },
    },
    "FlowAlarm": {
        "type": "object",
        "required": ["alarm", "condition", "state", "threshold", "unit"],
        "properties": {
            "flow": {"type": "string", "description": "in /api/alarms"},
            "alarm": {"type": "string"},
            "condition": {
                "type": "string",
                "enum": [
                    "error_rate",
                    "avg_run_time",
                    "oldest_unsent",
                    "quarantined",
                    "connector_failing",
                ],
            },
            "describe": {"type": "string", "description": "the condition in words"},
            "threshold": {
                "type": "number",
                "description": "it fires above this (connector_failing: when all of the last "
                "`runs` runs stopped)",
            },
            "unit": {"type": "string", "enum": ["%", "s", "orders", "runs"]},
            "runs": {"type": "integer", "description": "the window of finished runs"},
            "cool_off_seconds": {"type": "number"},
            "notify": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the notifiers' names (their URLs and passwords are never shown)",
            },
            "state": {
                "type": "string",
                "enum": ["ok", "firing", "unknown"],
                "description": "unknown: not evaluated yet",
            },
            "since": {**_STR_OR_NULL, "description": "in this state since (ISO 8601, UTC)"},
            "value": {**_NUM_OR_NULL, "description": "the last reading, in `unit`"},
            "measured": {**_STR_OR_NULL, "description": "the reading against the threshold"},
            "message": {"type": "string"},
            "evaluated_at": _STR_OR_NULL,
            "notified": {**_STR_OR_NULL, "description": "the state people were last told"},
            "notified_at": _STR_OR_NULL,
        },
    },
    "AlarmNotice": {
        "type": "object",
        "required": ["flow", "alarm", "at", "kind", "notifier", "ok"],
        "properties": {
            "flow": {"type": "string"},
            "alarm": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string", "enum": ["firing", "reminder", "recovered"]},
            "notifier": {"type": "string"},
            "ok": {"type": "boolean", "description": "false: it could not be sent (detail)"},
            "detail": {"type": "string"},
        },
    },
    "Alarms": {
        "type": "object",
        "required": ["where", "evaluator", "alarms", "notices"],
        "properties": {
            "where": {"type": "string", "enum": ["daemon", "standalone"]},
            "flow": _STR_OR_NULL,
            "evaluator": {
                "type": "object",
                "description": "who evaluates the alarms: one process at a time, the holder "
                "of the store's lease",
                "properties": {
                    "interval_seconds": {
                        **_NUM_OR_NULL,
                        "description": "how often this process evaluates (null: it does not)",
                    },
                    "note": {**_STR_OR_NULL, "description": "why this process does not"},
                    "holder": {**_STR_OR_NULL, "description": "the lease's holder now"},
                    "until": {**_STR_OR_NULL, "description": "when its lease runs out"},
                    "this_process": {"type": "boolean"},
                },
            },
            "alarms": {"type": "array", "items": _ref("FlowAlarm")},
            "notices": {
                "type": "array",
                "items": _ref("AlarmNotice"),
                "description": "the latest notices, newest first",
            },
        },
    },
    "OrderRef": {
        "type": "object",
        "properties": {
            "flow": {"type": "string"},
            "number": {"type": "string"},
            "state": {"type": "string"},
            "attempts": {"type": "integer"},
            "updated_at": _STR_OR_NULL,
        },
    },
    "Timeline": {
        "type": "object",
        "required": ["number", "journal", "events", "log", "deliveries"],
        "properties": {
            "number": {"type": "string"},
            "journal": {
                "type": "array",
                "description": "one row per flow that knows the order; the ERP request and "
                "answer as stored, masked",
                "items": {"type": "object"},
            },
            "events": {"type": "array", "items": {"type": "object"}},
            "log": {"type": "array", "items": {"type": "object"}},
            "deliveries": {"type": "array", "items": {"type": "object"}},
        },
    },
    "FailureGroup": {
        "type": "object",
        "properties": {
            "flow": {"type": "string"},
            "state": {"type": "string", "enum": ["failed", "quarantined"]},
            "error_kind": _STR_OR_NULL,
            "last_error": _STR_OR_NULL,
            "orders": {"type": "integer"},
            "example": {"type": "string"},
            "latest": _STR_OR_NULL,
        },
    },
    "RunLog": {
        "type": "object",
        "properties": {
            "run": {"type": "integer"},
            "lines": {"type": "array", "items": {}},
            "size": {"type": "integer", "description": "the whole file's size in bytes"},
            "truncated": {"type": "boolean", "description": "only the end is shown"},
            "note": {"type": "string"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"type": "string"},
            "daemon": {
                "type": "string",
                "description": "run now refused by a standalone console: the console of the "
                "daemon that runs over the same state store, where it is taken",
            },
        },
    },
    "Daemon": {
        "type": "object",
        "description": "Standalone console: the daemon whose heartbeat the state store holds "
        "(it runs the flows; run now and the live view are in its console)",
        "required": ["url", "until", "others", "note"],
        "properties": {
            "url": {
                **_STR_OR_NULL,
                "description": "its console (null: it serves none this console can link to)",
            },
            "until": {
                "type": "string",
                "format": "date-time",
                "description": "its last heartbeat holds until then",
            },
            "others": {"type": "integer", "description": "more live daemons on the store"},
            "note": {"type": "string"},
            "run_url": {
                **_STR_OR_NULL,
                "description": "a run's live answer: that run's page on the daemon",
            },
        },
    },
}

_WINDOW = _q(
    "window", "integer", "runs the error rate and average run time are over (1-1000)", 1, 1000
)


def document() -> dict[str, Any]:
    """The OpenAPI document of ``/api/``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "integrator console API",
            "version": "1",
            "description": "Views of the state store, and the operators' actions. Without "
            "users (config.yaml's console:) it is read-only, on loopback only. With users: a "
            "session cookie (POST /login) or Authorization: Bearer with a user's api_token; "
            "roles viewer (read), operator (actions), admin (everything).",
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/": _get("This document", {"type": "object"}),
            "/api/openapi.json": _get("This document", {"type": "object"}),
            "/api/flows": _get(
                "Every flow: schedule, last run, rates over a window, oldest unsent, "
                "quarantined, alarm state",
                {
                    "type": "object",
                    "properties": {
                        "window": {"type": "integer"},
                        "where": {"type": "string", "enum": ["daemon", "standalone"]},
                        "flows": {"type": "array", "items": _ref("Flow")},
                        "daemon": {
                            "anyOf": [_ref("Daemon"), {"type": "null"}],
                            "description": "standalone only: the daemon that runs the flows "
                            "over the same state store (null: none runs now)",
                        },
                        "note": {
                            "type": "string",
                            "description": "standalone only: where run now and the live view are",
                        },
                    },
                },
                [_WINDOW],
            ),
            "/api/flows/{name}": _get(
                "One flow's figures", _ref("Flow"), [_p("name", "string", "flow"), _WINDOW]
            ),
            "/api/runs": _get(
                "Runs, newest first",
                {
                    "type": "object",
                    "properties": {
                        "runs": {"type": "array", "items": _ref("Run")},
                        "next_before": {
                            **_INT_OR_NULL,
                            "description": "pass as ?before= for the next page",
                        },
                    },
                },
                [
                    _q("flow", "string", "only this flow"),
                    _q("status", "string", "running, ok, partial, failed or interrupted"),
                    _q("since", "string", "started at or after (ISO 8601; UTC if no zone)"),
                    _q("until", "string", "started before (ISO 8601; UTC if no zone)"),
                    _q("before", "integer", "ids below this (the next page)", 1, _ID_MAX),
                    _q("limit", "integer", "at most this many (1-500, default 50)", 1, 500),
                ],
            ),
            "/api/runs/{run_id}": _get(
                "One run", _ref("Run"), [_p("run_id", "integer", "the run's id")]
            ),
            "/api/runs/{run_id}/log": _get(
                "The end of a run's JSON-lines log (at most 256 KiB), masked",
                _ref("RunLog"),
                [_p("run_id", "integer", "the run's id")],
            ),
            "/api/runs/{run_id}/live": _get(
                "A run's live progress (the daemon's memory) while it runs; the stored run "
                "once it has ended, or where no daemon runs it (standalone: a note says so)",
                _ref("LiveAnswer"),
                [
                    _p("run_id", "integer", "the run's id"),
                    _q(
                        "after",
                        "integer",
                        "only orders published after this sequence number",
                        0,
                        _ID_MAX,
                    ),
                ],
            ),
            "/api/live": _get(
                "The runs in progress in this daemon (standalone: none, and a note)",
                {
                    "type": "object",
                    "required": ["where", "runs"],
                    "properties": {
                        "where": {"type": "string", "enum": ["daemon", "standalone"]},
                        "runs": {"type": "array", "items": _ref("LiveRun")},
                        "note": {"type": "string"},
                        "daemon": _ref("Daemon"),
                    },
                },
            ),
            "/api/workbench": _get(
                "The workbench's flows: the stages that run alone, and the recorded orders",
                {
                    "type": "object",
                    "properties": {"flows": {"type": "array", "items": _ref("WorkbenchFlow")}},
                },
            ),
            "/api/workbench/run": _post(
                "Run a script, a mapping or the whole flow (trace mode) on one order: "
                "nothing is called, nothing written",
                _ref("WorkbenchRun"),
                _ref("WorkbenchResult"),
                "viewer",
                _BENCH_ERRORS,
                local=True,
            ),
            "/api/workbench/golden": _post(
                "The golden tests' status (flows/tests/), nothing rewritten",
                {"type": "object", "properties": {"flow": {"type": "string"}}},
                {
                    "type": "object",
                    "required": ["cases", "passed", "failed"],
                    "properties": {
                        "cases": {"type": "array", "items": _ref("GoldenCase")},
                        "passed": {"type": "integer"},
                        "failed": {"type": "integer"},
                    },
                },
                "viewer",
                _BENCH_ERRORS,
                local=True,
            ),
            "/api/orders": _get(
                "Orders whose number is, or starts with, q, across flows",
                {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "orders": {"type": "array", "items": _ref("OrderRef")},
                    },
                },
                [_q("q", "string", "an order number, or its beginning")],
            ),
            "/api/orders/{number}": _get(
                "An order's timeline in every flow that knows it",
                _ref("Timeline"),
                [_p("number", "string", "the order number")],
            ),
            "/api/failures": _get(
                "Failed and quarantined orders grouped by error",
                {
                    "type": "object",
                    "properties": {"groups": {"type": "array", "items": _ref("FailureGroup")}},
                },
                [_q("flow", "string", "only this flow")],
            ),
            "/api/alarms": _get(
                "Every flow's alarms: condition, state, last evaluation, cool-off; who "
                "evaluates them; the latest notices (sent, failed to send, recoveries)",
                _ref("Alarms"),
                [
                    _q("flow", "string", "only this flow"),
                    _q("limit", "integer", "at most this many notices (1-500, default 50)", 1, 500),
                ],
            ),
            "/api/me": _get("Who is asking (null without login)", _ref("Me")),
            "/api/users": _get("The console's users and roles (admin)", _ref("Users")),
            "/api/actions/release": _action(
                "Release a flow's quarantined orders (those whose error contains reason); "
                "the next run takes them. Orders whose ERP copy is unknown are kept",
                {"flow": _NAME, "reason": _TEXT, "note": _TEXT},
                ["flow"],
            ),
            "/api/actions/replay": _action(
                "Run one order through its flow now, quarantine and backoff notwithstanding; "
                "refused when its last write's outcome is unknown, unless force",
                {"number": _NAME, "flow": _TEXT, "force": {"type": "boolean"}},
                ["number"],
            ),
            "/api/actions/resolve": _action(
                "Settle an order whose last write's outcome is unknown: as sent (the ERP has "
                "it, erp_ref is its id there) or resend (written again on the next run)",
                {
                    "number": _NAME,
                    "flow": _TEXT,
                    "as": {"type": "string", "enum": ["sent", "resend"]},
                    "erp_ref": _TEXT,
                },
                ["number", "as"],
            ),
            "/api/actions/run": _action(
                "Queue a run of the flow now (the daemon only)", {"flow": _NAME}, ["flow"]
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "integrator_session"},
            },
            "schemas": SCHEMAS,
            "responses": {
                "Error": {
                    "description": "What was wrong, and what to do",
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
            },
        },
    }

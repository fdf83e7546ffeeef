"""``notifiers:`` (config.yaml) and ``alarms:`` (a flow file), read and checked.

Light on purpose: ``validate`` and every load import it (no requests, SQLAlchemy, Jinja2).

A flow's alarms::

    alarms:
      - name: erp-errors            # unique in the flow; default: the condition's name
        condition: error_rate       # error_rate, avg_run_time, oldest_unsent,
                                    # quarantined, connector_failing
        above: 20                   # %, a duration, or a count, by condition
        runs: 10                    # the window: the last N finished runs
        cool_off: 15m               # no repeat notice within it (default 30m)
        notify: [ops-slack]         # notifiers of config.yaml
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from integrator.config.checks import Options, clear_secret
from integrator.config.yamlfile import YamlDoc, join_key

__all__ = [
    "ALARM_INTERVAL",
    "CONDITIONS",
    "AlarmSpec",
    "NotifierConfig",
    "parse_duration",
    "read_alarms",
    "read_notifiers",
]

# condition → (what `above` is, the default window of runs, whether `runs` applies)
CONDITIONS: dict[str, tuple[str, int, bool]] = {
    "error_rate": ("percent", 10, True),
    "avg_run_time": ("duration", 10, True),
    "oldest_unsent": ("duration", 1, False),
    "quarantined": ("count", 1, False),
    "connector_failing": ("none", 1, True),
}
NOTIFIER_TYPES = ("webhook", "email")
DEFAULT_COOL_OFF = 1800.0
ALARM_INTERVAL = 60.0  # seconds between evaluations (`--alarm-interval`: daemon, console)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)\s*([smhd]))", re.IGNORECASE)


def parse_duration(value: Any) -> float | str:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h``, ``1d`` or ``1h30m``; or the problem."""
    if isinstance(value, bool):
        return "expected a duration such as 90s, 15m, 2h or 1d (or a number of seconds)"
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return f"expected a finite duration of 0 or more, got {value!r}"
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        parts = _DURATION.findall(text)
        if parts and "".join(_DURATION.sub("", text).split()) == "":
            return sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    return f"expected a duration such as 90s, 15m, 2h or 1d (or a number of seconds), got {value!r}"


@dataclass(frozen=True)
class NotifierConfig:
    """One entry of config.yaml's ``notifiers:``."""

    name: str
    type: str  # webhook, email
    url: str = ""  # webhook (a secret: Slack's carries its token)
    template: str = ""  # webhook: a Jinja2 template of the JSON body (default: Slack's shape)
    headers: tuple[tuple[str, str], ...] = ()  # webhook
    timeout: float = 10.0
    host: str = ""  # email: the SMTP server
    port: int = 25
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    to: tuple[str, ...] = ()
    key: str = ""

    def __repr__(self) -> str:  # never show the URL (it may carry a token) or the password
        return f"NotifierConfig(name={self.name!r}, type={self.type!r})"


@dataclass(frozen=True)
class AlarmSpec:
    """One entry of a flow's ``alarms:``."""

    name: str
    condition: str
    above: float  # percent, seconds or a count (unused by connector_failing)
    runs: int  # the window of finished runs
    cool_off: float  # seconds
    notify: tuple[str, ...]
    connector: str = ""  # connector_failing: only errors naming this connector
    key: str = ""

    def describe(self) -> str:
        """The condition in words, as notices and `integrator alarms` show it."""
        if self.condition == "error_rate":
            return f"error rate above {self.above:g}% over the last {self.runs} runs"
        if self.condition == "avg_run_time":
            return f"average run time above {self.above:g}s over the last {self.runs} runs"
        if self.condition == "oldest_unsent":
            return f"oldest unsent order older than {self.above:g}s"
        if self.condition == "quarantined":
            return f"more than {self.above:g} orders quarantined"
        who = f"connector {self.connector!r}" if self.connector else "a connector"
        return f"{who} failing or unreachable in the last {self.runs} runs"


_NOTIFIER_KEYS = {
    "name",
    "type",
    "url",
    "template",
    "headers",
    "timeout",
    "host",
    "port",
    "starttls",
    "username",
    "password",
    "from",
    "to",
}
_SECRET_HEADER = re.compile(r"auth|token|key|secret", re.IGNORECASE)
_WEBHOOK_ONLY = ("url", "template", "headers")
_EMAIL_ONLY = ("host", "port", "starttls", "username", "password", "from", "to")


def read_notifiers(o: Options, doc: YamlDoc) -> tuple[NotifierConfig, ...]:
    """config.yaml's ``notifiers:``, every problem recorded in ``o.issues``."""
    out: list[NotifierConfig] = []
    seen: dict[str, str] = {}
    raw_list = doc.data.get("notifiers") if isinstance(doc.data, dict) else None
    for i, data in enumerate(o.get("notifiers", list, [])):
        key = join_key("notifiers", i)
        raw = raw_list[i] if isinstance(raw_list, list) and i < len(raw_list) else {}
        n = Options(data, doc, key, o.issues, _NOTIFIER_KEYS)
        name = n.get("name", str, "", required=True)
        kind = n.get(
            "type",
            str,
            "",
            required=True,
            check=lambda v: None if v in NOTIFIER_TYPES else "expected webhook or email",
        )
        if name in seen:
            n.error("name", f"notifier {name!r} is declared twice (also at {seen[name]})")
        seen[name] = key
        if isinstance(raw, dict):
            clear_secret(doc, raw.get("password"), n.sub("password"), o.issues)
        wrong = _EMAIL_ONLY if kind == "webhook" else _WEBHOOK_ONLY if kind == "email" else ()
        for opt in wrong:
            if opt in n.data:
                n.error(opt, f"{opt!r} is not an option of a {kind} notifier")
        timeout = n.get(
            "timeout",
            float,
            10.0,
            check=lambda v: None if 0 < v <= 120 else "expected more than 0 and at most 120 s",
        )
        headers: list[tuple[str, str]] = []
        # a ${VAR} left empty: unset, reported by the load (or tolerated: a lenient load of a
        # command that sends nothing, such as the console)
        written = raw if isinstance(raw, dict) else {}
        unset = frozenset(
            k for k in ("url", "password") if not _given(n.data.get(k), written.get(k))
        )
        url_unset = "url" in unset
        if kind == "webhook":
            url = n.get(
                "url",
                str,
                "",
                required=True,
                check=partial(_url_problem, unset=url_unset),
            )
            template = n.get("template", str, "")
            if template:
                problem = _template_problem(template)
                if problem:
                    n.error("template", problem)
            for k, v in n.get("headers", dict, {}).items():
                headers.append((str(k), str(v)))
                raw_headers = raw.get("headers") if isinstance(raw, dict) else None
                if isinstance(raw_headers, dict) and _SECRET_HEADER.search(str(k)):
                    clear_secret(
                        doc, raw_headers.get(k), join_key(n.sub("headers"), str(k)), o.issues
                    )
            if name and kind:
                out.append(
                    NotifierConfig(
                        name, kind, url=url, template=template, headers=tuple(headers),
                        timeout=timeout, key=key,
                    )
                )  # fmt: skip
            continue
        if kind == "email":
            host = n.get("host", str, "", required=True)
            port = n.get(
                "port", int, 25, check=lambda v: None if 0 < v < 65536 else "expected 1 to 65535"
            )
            sender = n.get("from", str, "", required=True)
            to = n.get("to", list, [], required=True)
            if "to" in n.data and not to:
                n.error("to", "expected at least one address")
            for j, addr in enumerate(to):
                if not isinstance(addr, str) or "@" not in addr:
                    o.issues.append(
                        doc.issue(
                            join_key(n.sub("to"), j), f"expected an email address, got {addr!r}"
                        )
                    )
            username = n.get("username", str, "")
            password = n.get("password", str, "")
            if username and not password and "password" not in unset:
                n.error("password", "username is set: the password is needed too (${ENV_VAR})")
            out.append(
                NotifierConfig(
                    name,
                    kind,
                    timeout=timeout,
                    host=host,
                    port=port,
                    starttls=n.get("starttls", bool, False),
                    username=username,
                    password=password,
                    sender=sender,
                    to=tuple(str(a) for a in to),
                    key=key,
                )
            )
    return tuple(out)


def _url_problem(url: str, unset: bool) -> str | None:
    if re.match(r"https?://[^/\s]+", url) or unset:
        return None
    return "expected an http(s) URL (from ${ENV_VAR}: it may carry a token)"


def _given(value: Any, raw: Any) -> bool:
    """False when ``value`` is empty and was written as a ``${...}`` reference."""
    return bool(value) or not (isinstance(raw, str) and "${" in raw)


def _template_problem(template: str) -> str | None:
    """A template Jinja2 cannot compile, named with its line; Jinja2 only when one is written."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        SandboxedEnvironment().parse(template)
    except TemplateSyntaxError as exc:
        return f"the template is not valid Jinja2: {exc.message} (template line {exc.lineno})"
    return None


_ALARM_KEYS = {"name", "condition", "above", "runs", "cool_off", "notify", "connector"}


def read_alarms(
    o: Options, doc: YamlDoc, notifiers: dict[str, NotifierConfig], connectors: set[str]
) -> tuple[AlarmSpec, ...]:
    """A flow's ``alarms:``; each notifier named must be declared in config.yaml."""
    out: list[AlarmSpec] = []
    seen: dict[str, str] = {}
    for i, data in enumerate(o.get("alarms", list, [])):
        key = join_key("alarms", i)
        a = Options(data, doc, key, o.issues, _ALARM_KEYS)
        condition = a.get(
            "condition",
            str,
            "",
            required=True,
            check=lambda v: (
                None
                if v in CONDITIONS
                else f"unknown condition {v!r}; expected one of {', '.join(CONDITIONS)}"
            ),
        )
        name = a.get("name", str, condition)
        if name and name in seen:
            a.error("name", f"alarm {name!r} is declared twice in this flow (also at {seen[name]})"
                    "; give one a name")  # fmt: skip
        seen[name] = key
        kind, default_runs, has_runs = CONDITIONS.get(condition, ("none", 1, True))
        above = _above(a, kind, condition)
        runs = default_runs
        if "runs" in a.data and not has_runs:
            a.error("runs", f"{condition} is measured by the last run alone: remove runs")
        elif has_runs:
            runs = a.get(
                "runs", int, default_runs,
                check=lambda v: None if 1 <= v <= 1000 else "expected 1 to 1000 runs",
            )  # fmt: skip
        cool_off = DEFAULT_COOL_OFF
        if "cool_off" in a.data:
            found = parse_duration(a.data["cool_off"])
            if isinstance(found, str):
                a.error("cool_off", found)
            else:
                cool_off = found
        notify = a.get("notify", list, [], required=True)
        if "notify" in a.data and not notify:
            a.error("notify", "expected at least one notifier's name")
        for j, target in enumerate(notify):
            if str(target) not in notifiers:
                o.issues.append(
                    doc.issue(
                        join_key(a.sub("notify"), j),
                        f"no notifier named {target!r} in config.yaml's notifiers; known: "
                        f"{', '.join(sorted(notifiers)) or 'none (declare one under notifiers:)'}",
                    )
                )
        connector = a.get("connector", str, "")
        if connector and condition != "connector_failing":
            a.error("connector", "connector applies to connector_failing alone")
        elif connector and connector not in connectors:
            a.error("connector", f"no connector named {connector!r}; known: "
                    f"{', '.join(sorted(connectors)) or 'none'}")  # fmt: skip
        if condition in CONDITIONS:
            out.append(
                AlarmSpec(name, condition, above, runs, cool_off,
                          tuple(str(t) for t in notify), connector=connector, key=key)
            )  # fmt: skip
    return tuple(out)


def _above(a: Options, kind: str, condition: str) -> float:
    if kind == "none":
        if "above" in a.data:
            a.error("above", f"{condition} has no threshold: remove above")
        return 0.0
    if "above" not in a.data:
        a.error("above", f"required option is missing: the threshold of {condition}")
        return 0.0
    value = a.data["above"]
    if kind == "duration":
        found = parse_duration(value)
        if isinstance(found, str):
            a.error("above", found)
            return 0.0
        return found
    if kind == "percent" and isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        a.error("above", f"expected a number, got {value!r}")
        return 0.0
    if kind == "percent" and not 0 <= value < 100:
        a.error("above", "expected a percentage from 0 to below 100")
    if kind == "count" and (value < 0 or value != int(value)):
        a.error("above", "expected a whole number of orders, 0 or more")
    return float(value)

"""A flow's ``schedule:``: cron (with a timezone), a fixed interval, or after another flow.

.. code-block:: yaml

    schedule:
      cron: "*/5 * * * *"        # 5 fields, checked with croniter
      timezone: Europe/Istanbul  # default UTC
      misfire_grace_seconds: 60  # a fire missed by more than this is skipped
      coalesce: true             # several missed fires run once

    schedule: {every: 5m}        # 30s, 5m, 1h, 7d
    schedule: {triggered_by: order_flow, only_on_success: true}

No ``schedule`` (or ``schedule: {}``): the flow runs only by hand (``run-flow``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrator._lazy import lazy_exports
from integrator.errors import ConfigIssue

if TYPE_CHECKING:  # APScheduler loads when a trigger is built (the daemon, `flows`)
    from integrator.scheduler.cron import CronTrigger

__all__ = ["CronTrigger", "Schedule", "parse_schedule"]

__getattr__ = lazy_exports("integrator.scheduler", {"CronTrigger": "cron"})

_EVERY = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEYS = {
    "cron",
    "timezone",
    "every",
    "triggered_by",
    "only_on_success",
    "misfire_grace_seconds",
    "coalesce",
}


@dataclass(frozen=True)
class Schedule:
    """What fires a flow."""

    kind: str  # cron, every, triggered_by, manual
    cron: str = ""
    timezone: str = "UTC"
    every_seconds: int = 0
    triggered_by: str = ""
    only_on_success: bool = True
    misfire_grace_seconds: int = 60
    coalesce: bool = True

    def describe(self) -> str:
        """``cron */5 * * * * (Europe/Istanbul)``, ``every 5m``, ``after order_flow``."""
        if self.kind == "cron":
            return f"cron {self.cron} ({self.timezone})"
        if self.kind == "every":
            return f"every {_human(self.every_seconds)}"
        if self.kind == "triggered_by":
            when = "succeeds" if self.only_on_success else "ends"
            return f"when {self.triggered_by} {when}"
        return "manual (run-flow only)"

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger of a cron schedule."""
        from integrator.scheduler.cron import CronTrigger

        return CronTrigger(self.cron, ZoneInfo(self.timezone))

    def next_times(self, n: int, after: dt.datetime | None = None) -> list[dt.datetime]:
        """The next ``n`` fire times (cron and every; empty for the others)."""
        now = after or dt.datetime.now(dt.UTC)
        if self.kind == "cron":
            trigger, out, prev = self.trigger(), [], None
            moment = now
            for _ in range(n):
                nxt = trigger.get_next_fire_time(prev, moment)
                if nxt is None:
                    break
                out.append(nxt)
                prev = moment = nxt
            return out
        if self.kind == "every":
            step = dt.timedelta(seconds=self.every_seconds)
            return [now + step * (i + 1) for i in range(n)]
        return []


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_schedule(
    raw: Any, file: str, key: str = "schedule"
) -> tuple[Schedule, list[ConfigIssue]]:
    """The schedule, or a manual one with the issues that explain why."""
    issues: list[ConfigIssue] = []

    def bad(sub: str, msg: str) -> None:
        issues.append(ConfigIssue(file, f"{key}.{sub}" if sub else key, msg))

    if raw in (None, {}):
        return Schedule("manual"), []
    if not isinstance(raw, dict):
        bad("", "expected a mapping with cron, every or triggered_by")
        return Schedule("manual"), issues
    for k in raw:
        if k not in _KEYS:
            bad(str(k), f"unknown option; allowed: {', '.join(sorted(_KEYS))}")
    kinds = [k for k in ("cron", "every", "triggered_by") if k in raw]
    if len(kinds) != 1:
        bad("", "give exactly one of cron, every, triggered_by")
        return Schedule("manual"), issues
    grace = raw.get("misfire_grace_seconds", 60)
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 1:
        bad("misfire_grace_seconds", "expected whole seconds, 1 or more")
        grace = 60
    coalesce = raw.get("coalesce", True)
    if not isinstance(coalesce, bool):
        bad("coalesce", "expected true or false")
        coalesce = True
    common: dict[str, Any] = {"misfire_grace_seconds": grace, "coalesce": coalesce}
    kind = kinds[0]
    if kind == "cron":
        from croniter import croniter

        expr, tz = raw["cron"], raw.get("timezone", "UTC")
        if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
            bad(
                "cron", f"{expr!r} is not a 5-field cron expression (minute hour day month weekday)"
            )
            return Schedule("manual"), issues
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            bad("timezone", f"unknown timezone {tz!r}; use an IANA name such as Europe/Istanbul")
            return Schedule("manual"), issues
        return Schedule("cron", cron=expr, timezone=str(tz), **common), issues
    if kind == "every":
        m = _EVERY.match(str(raw["every"]))
        if not m or int(m.group(1)) == 0:
            bad("every", f"{raw['every']!r}: expected a number and a unit, such as 30s, 5m, 1h, 7d")
            return Schedule("manual"), issues
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
        return Schedule("every", every_seconds=seconds, **common), issues
    upstream = raw["triggered_by"]
    only = raw.get("only_on_success", True)
    if not isinstance(upstream, str) or not upstream:
        bad("triggered_by", "expected the name of another flow")
        return Schedule("manual"), issues
    if not isinstance(only, bool):
        bad("only_on_success", "expected true or false")
        only = True
    return Schedule("triggered_by", triggered_by=upstream, only_on_success=only, **common), issues

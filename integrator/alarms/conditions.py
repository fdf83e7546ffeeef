"""What each alarm condition measures, from the runs the store recorded and the journal.

* ``error_rate``: the share (%) of the last ``runs`` finished runs that ended ``failed`` or
  ``partial`` (interrupted runs are left out: a stop is no error of the flow).
* ``avg_run_time``: the mean duration of the last ``runs`` finished runs, in seconds.
* ``oldest_unsent``: the age of the oldest unsent order as the latest run that read the whole
  source list measured it (``runs.oldest_unsent_seconds``), in seconds.
* ``quarantined``: the orders of the flow in quarantine now.
* ``connector_failing``: the last ``runs`` runs all stopped (``failed``: login refused, circuit
  open, a connector unreachable...), each error naming ``connector`` when it is given.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integrator.alarms.config import AlarmSpec
    from integrator.alarms.store import AlarmStore

__all__ = ["Measure", "measure"]


@dataclass(frozen=True)
class Measure:
    """A condition's reading: whether it holds, what it measured, in words."""

    firing: bool
    value: float | None
    message: str


def _seconds(run: dict[str, Any]) -> float | None:
    start, end = run.get("started_at"), run.get("ended_at")
    if not isinstance(start, dt.datetime) or not isinstance(end, dt.datetime):
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return max((end - start).total_seconds(), 0.0)


def measure(spec: AlarmSpec, flow: str, alarms: AlarmStore) -> Measure:
    """Read ``spec``'s condition for ``flow`` now."""
    c = spec.condition
    if c == "quarantined":
        n = alarms.store.journal.count_states(flow).get("quarantined", 0)
        return Measure(n > spec.above, float(n), f"{n} orders quarantined")
    if c == "oldest_unsent":
        found = [
            r for r in alarms.finished_runs(flow, 50) if r["oldest_unsent_seconds"] is not None
        ]
        if not found:
            return Measure(False, None, "no run has read the whole source list yet")
        age = float(found[0]["oldest_unsent_seconds"])
        return Measure(
            age > spec.above, age, f"oldest unsent order {age:.0f}s old (run {found[0]['id']})"
        )
    window = alarms.finished_runs(flow, spec.runs * 2 + 10)
    if c == "connector_failing":
        last = window[: spec.runs]
        if len(last) < spec.runs:
            return Measure(False, None, f"fewer than {spec.runs} runs so far")
        failing = [r for r in last if r["status"] == "failed" and _names(r, spec.connector)]
        firing = len(failing) == len(last)
        error = str(last[0].get("error") or "") if firing else ""
        return Measure(
            firing,
            float(len(failing)),
            f"the last {len(last)} runs stopped: {error[:300]}"
            if firing
            else f"{len(failing)} of the last {len(last)} runs stopped",
        )
    runs = [r for r in window if r["status"] != "interrupted"][: spec.runs]
    if not runs:
        return Measure(False, None, "no finished run yet")
    if c == "error_rate":
        bad = sum(1 for r in runs if r["status"] in ("failed", "partial"))
        rate = 100.0 * bad / len(runs)
        return Measure(
            rate > spec.above, rate, f"{bad} of the last {len(runs)} runs failed ({rate:.0f}%)"
        )
    times = [s for s in (_seconds(r) for r in runs) if s is not None]
    mean = sum(times) / len(times) if times else 0.0
    return Measure(
        mean > spec.above, mean, f"the last {len(runs)} runs took {mean:.1f}s on average"
    )


def _names(run: dict[str, Any], connector: str) -> bool:
    """Whether the run's error names ``connector`` (any error when no connector is given)."""
    if not connector:
        return True
    error = str(run.get("error") or "")
    return re.search(rf"(?<![\w-]){re.escape(connector)}(?![\w-])", error) is not None

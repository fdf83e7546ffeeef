"""APScheduler's cron trigger with cron's rule for DST changes: imported only when a trigger is
built (the daemon, ``integrator flows``), so that reading a schedule needs no APScheduler."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger as _ApsCron

__all__ = ["CronTrigger"]

ZERO = dt.timedelta(0)


class CronTrigger(_ApsCron):  # type: ignore[misc]  # APScheduler 3 ships no types
    """APScheduler's cron trigger, with cron's rule for the repeated hour of a DST change.

    When clocks go back, a wall time such as 02:30 happens twice. A job at fixed hours runs at
    the first one only (APScheduler alone would run it twice); a job whose hour field is ``*``
    keeps running in real time through both. When clocks go forward, a time in the gap runs
    at the same instant just after the change (APScheduler's rule), so it is not skipped.
    """

    def __init__(self, expr: str, timezone: ZoneInfo) -> None:
        fields = expr.split()
        values = dict(zip(("minute", "hour", "day", "month", "day_of_week"), fields, strict=True))
        super().__init__(timezone=timezone, **values)
        self.every_hour = fields[1] == "*"

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        """The next fire time, skipping the second pass through a repeated wall time."""
        nxt: dt.datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while nxt is not None and not self.every_hour and _second_pass(nxt):
            # Past the repeated hour: the wall clock no longer meets an ambiguous time.
            after = nxt + (nxt.replace(fold=0).utcoffset() or ZERO) - (nxt.utcoffset() or ZERO)
            nxt = super().get_next_fire_time(nxt, after + dt.timedelta(seconds=1))
        return nxt


def _second_pass(when: dt.datetime) -> bool:
    """True for the later of two instants that share a wall time (fold=1 of an ambiguous time)."""
    return when.fold == 1 and when.replace(fold=0).utcoffset() != when.utcoffset()

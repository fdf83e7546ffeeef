"""Schedules: parsing, and fire times across DST changes on a frozen clock (no sleeping)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from integrator.scheduler.schedule import CronTrigger, parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")


def fires(expr: str, start: dt.datetime, n: int) -> list[str]:
    """The next ``n`` fire times as UTC strings, from a fixed ``start``."""
    trigger, prev, now, out = CronTrigger(expr, BERLIN), None, start, []
    for _ in range(n):
        nxt = trigger.get_next_fire_time(prev, now)
        assert nxt is not None
        out.append(nxt.astimezone(dt.UTC).strftime("%m-%d %H:%M"))
        prev = now = nxt
    return out


def test_daily_job_runs_once_when_clocks_go_back() -> None:
    # 2026-10-25: 03:00 CEST → 02:00 CET, so 02:30 happens twice; the job runs at the first.
    assert fires("30 2 * * *", dt.datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3) == [
        "10-25 00:30",  # 02:30 CEST
        "10-26 01:30",  # 02:30 CET
        "10-27 01:30",
    ]


def test_daily_job_is_not_skipped_when_clocks_go_forward() -> None:
    # 2026-03-29: 02:00 CET → 03:00 CEST; 02:30 does not exist and runs right after the change.
    assert fires("30 2 * * *", dt.datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3) == [
        "03-29 01:30",  # 03:30 CEST
        "03-30 00:30",  # 02:30 CEST
        "03-31 00:30",
    ]


def test_every_hour_jobs_keep_real_time_through_the_repeated_hour() -> None:
    assert fires("*/30 * * * *", dt.datetime(2026, 10, 25, 1, 40, tzinfo=BERLIN), 4) == [
        "10-25 00:00",  # 02:00 CEST
        "10-25 00:30",  # 02:30 CEST
        "10-25 01:00",  # 02:00 CET
        "10-25 01:30",  # 02:30 CET
    ]


def test_parse_every_triggered_by_and_errors() -> None:
    s, issues = parse_schedule({"every": "5m"}, "f.yaml")
    assert not issues and s.kind == "every" and s.every_seconds == 300
    assert s.describe() == "every 5m"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert [t.minute for t in s.next_times(3, start)] == [5, 10, 15]
    s, issues = parse_schedule({"triggered_by": "order_flow", "only_on_success": False}, "f")
    assert not issues and s.triggered_by == "order_flow" and not s.only_on_success
    s, issues = parse_schedule({"cron": "*/5 * * * *", "timezone": "Europe/Istanbul"}, "f")
    assert not issues and s.describe() == "cron */5 * * * * (Europe/Istanbul)"
    assert [t.minute % 5 for t in s.next_times(3, start)] == [0, 0, 0]
    assert parse_schedule({}, "f")[0].kind == "manual"
    for raw, key, text in (
        ({"cron": "61 * * * *"}, "schedule.cron", "not a 5-field cron expression"),
        ({"cron": "* * * * *", "timezone": "Mars/Base"}, "schedule.timezone", "unknown timezone"),
        ({"every": "5 parsecs"}, "schedule.every", "such as 30s, 5m, 1h, 7d"),
        ({"every": "5m", "cron": "* * * * *"}, "schedule", "exactly one of"),
        ({"every": "5m", "misfire_grace_seconds": 0}, "schedule.misfire_grace_seconds", "1 or"),
        ({"every": "5m", "jitter": 3}, "schedule.jitter", "unknown option"),
    ):
        _, issues = parse_schedule(raw, "f.yaml")
        assert issues and issues[0].key == key and text in issues[0].message, (raw, issues)

"""Scheduling: flow schedules and the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
    from integrator.scheduler.schedule import Schedule, parse_schedule

__all__ = ["Schedule", "parse_schedule"]

__getattr__ = lazy_exports(__name__, {"Schedule": "schedule", "parse_schedule": "schedule"})

"""Scheduling: flow schedules and the daemon."""

from __future__ import annotations

from integrator.scheduler.schedule import Schedule, parse_schedule

__all__ = ["Schedule", "parse_schedule"]

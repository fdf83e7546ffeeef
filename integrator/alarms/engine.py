"""One evaluation of the alarms: under the lease, each alarm's new state, and its notices.

Cool-off: a notice of an alarm is not followed by another within ``cool_off`` (a flapping
alarm tells once; one that stays firing is told again after it). A recovery notice follows
a firing notice when the condition stops holding. A notice that no notifier delivered is
tried again at the next evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import structlog

from integrator.alarms.conditions import measure
from integrator.alarms.notify import Notice, NotifyError, send
from integrator.alarms.store import AlarmRow, AlarmStore, Lease

if TYPE_CHECKING:
    from integrator.alarms.config import AlarmSpec, NotifierConfig
    from integrator.config.model import AppConfig, FlowConfig
    from integrator.state.store import Store

__all__ = ["Evaluation", "evaluate"]

log = structlog.get_logger("integrator.alarms")

LEASE_SECONDS = 120.0


@dataclass
class Evaluation:
    """What one evaluation did."""

    held: bool  # False: another process holds the lease, nothing was evaluated
    holder: str = ""  # who holds it when not us
    states: list[AlarmRow] = field(default_factory=list)
    notices: list[tuple[str, str, str, str, bool, str]] = field(default_factory=list)
    # (flow, alarm, kind, notifier, ok, detail)


def _kind(row: AlarmRow | None, firing: bool, cool_off: float, now: float) -> str | None:
    told, at = (row.notified_state, row.notified_at) if row else (None, None)
    cooled = at is None or now - at >= cool_off
    if firing:
        if told != "firing":
            return "firing" if cooled else None
        return "reminder" if cooled else None
    return "recovered" if told == "firing" else None


def evaluate(
    app: AppConfig,
    flows: Iterable[FlowConfig],
    store: Store,
    *,
    lease: Lease | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> Evaluation:
    """Evaluate every alarm of ``flows`` if this process gets the lease (``lease``: the one a
    daemon keeps and renews; else one taken now and given back at the end)."""
    own = lease is None
    lease = lease or Lease(store)
    if not lease.take(lease_seconds):
        current = lease.current()
        return Evaluation(held=False, holder=current[0] if current else "")
    out = Evaluation(held=True)
    alarms = AlarmStore(store)
    notifiers = {n.name: n for n in app.notifiers}
    try:
        for flow in flows:
            alarms.forget(flow.name, {a.name for a in flow.alarms})
            for spec in flow.alarms:
                if not lease.holds():
                    log.warning("alarm_lease_lost", flow=flow.name)
                    return out
                _one(out, alarms, flow, spec, notifiers, app.secrets | flow.secrets)
    finally:
        if own:
            lease.release()
    return out


def _one(
    out: Evaluation,
    alarms: AlarmStore,
    flow: FlowConfig,
    spec: AlarmSpec,
    notifiers: dict[str, NotifierConfig],
    secrets: frozenset[str],
) -> None:
    now = time.time()
    try:
        m = measure(spec, flow.name, alarms)
    except Exception as exc:  # noqa: BLE001 - one broken reading must not stop the others
        log.error("alarm_unreadable", flow=flow.name, alarm=spec.name, error=str(exc))
        return
    row = alarms.get(flow.name, spec.name)
    state = "firing" if m.firing else "ok"
    kind = _kind(row, m.firing, spec.cool_off, now)
    new = AlarmRow(
        flow=flow.name,
        alarm=spec.name,
        state=state,
        since=row.since if row is not None and row.state == state else now,
        value=m.value,
        message=m.message,
        evaluated_at=now,
        notified_state=(state if kind else row.notified_state)
        if row
        else (state if kind else None),
        notified_at=now if kind else (row.notified_at if row else None),
        version=0,
    )
    if not alarms.put(new, row):
        return  # another evaluator changed it meanwhile: its notice, not ours
    claimed = replace(new, version=(row.version if row else 0) + 1)
    out.states.append(claimed)
    if row is None or row.state != state:
        log.info("alarm_changed", flow=flow.name, alarm=spec.name, state=state, detail=m.message)
    if kind is None:
        return
    notice = Notice(flow.name, spec.name, kind, spec.describe(), m.value, m.message)
    delivered = 0
    for name in spec.notify:
        n = notifiers.get(name)
        if n is None:  # validate refuses it; a reload may race a config change
            continue
        try:
            send(n, notice, secrets)
        except NotifyError as exc:
            detail = str(exc)
            log.error("alarm_notice_failed", flow=flow.name, alarm=spec.name, error=detail)
            alarms.record_notice(flow.name, spec.name, kind, name, False, detail)
            out.notices.append((flow.name, spec.name, kind, name, False, detail))
            continue
        delivered += 1
        alarms.record_notice(flow.name, spec.name, kind, name, True, "")
        out.notices.append((flow.name, spec.name, kind, name, True, ""))
    if delivered == 0 and spec.notify:  # nobody was told: tell again at the next evaluation
        back = replace(
            claimed,
            notified_state=row.notified_state if row else None,
            notified_at=row.notified_at if row else None,
        )
        alarms.put(back, claimed)

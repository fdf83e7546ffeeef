"""A person's actions on orders: release from quarantine, resolve, and the check before a replay.

One place for these decisions, used by the CLI (``integrator quarantine release``, ``replay``,
``resolve``) and the console. Every action goes through the ledger (the same table, the same
redaction as a run) under the flow's lock, and is an event on the order naming who did it.
A refusal is an ``ActionRefused`` with the message a person reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from integrator.errors import UserError

if TYPE_CHECKING:
    from integrator.pipeline.project import Project
    from integrator.state import Fact, Ledger, Store
    from integrator.state.journal import JournalEntry

__all__ = [
    "ActionRefused",
    "Released",
    "apply_fact",
    "flow_of",
    "ledger_for",
    "locked",
    "prepare_replay",
    "release",
    "resolve",
]


class ActionRefused(UserError):
    """The action cannot be taken: why, and what to do."""


def flow_of(store: Store, number: str, flow: str | None) -> str:
    """The flow whose journal holds order ``number`` (``flow`` when given and it does)."""
    flows = store.journal.flows_of(number)
    if flow:
        if flow not in flows:
            raise ActionRefused(f"order {number} is not in the journal of flow {flow!r}")
        return flow
    if not flows:
        raise ActionRefused(f"order {number} is not in the journal of any flow")
    if len(flows) > 1:
        raise ActionRefused(f"order {number} is in several flows ({', '.join(flows)}): --flow")
    return flows[0]


def ledger_for(project: Project, store: Store, flow: str) -> Ledger:
    from integrator.connectors.redact import Redactor, known_secrets
    from integrator.pipeline.project import policy_for
    from integrator.state import Ledger

    built = project.flows.get(flow)
    if built is None:
        raise ActionRefused(
            f"flow {flow!r} is in the state store but not in {project.app.flows_dir}: "
            "restore its file to act on its orders"
        )
    return Ledger(store, flow, policy_for(project.app, built), Redactor(known_secrets(project.app)))


@contextmanager
def locked(store: Store, flow: str) -> Iterator[None]:
    """A person's action waits for no run but runs beside none: the flow's lock, or a clear
    refusal while a run of it is going on (its orders would move under the action)."""
    from integrator.state.locks import FlowBusy

    try:
        with store.locks.hold(flow):
            yield
    except FlowBusy:
        raise ActionRefused(
            f"flow {flow!r} is running now (a daemon or another command): try again when the "
            "run ends, so that your action and the run do not cross"
        ) from None


def apply_fact(
    ledger: Ledger,
    entry: JournalEntry,
    fact: Fact,
    message: str,
    response: Any = None,
    erp_ref: str | None = None,
) -> None:
    """One person's fact, or a refusal saying why the ledger refuses it."""
    from integrator.state import LedgerError
    from integrator.state.ledger import Track

    track = Track.of(entry.order_number, entry.order_pk, entry)
    try:
        ledger.apply(track, fact, message, response=response, erp_ref=erp_ref)
    except LedgerError as exc:
        raise ActionRefused(
            f"order {entry.order_number} is {entry.state}: {str(exc).split(': ', 1)[-1]}"
        ) from None


@dataclass
class Released:
    released: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # a person must say what the ERP holds


def release(
    project: Project, store: Store, flow: str, reason: str | None, note: str | None, who: str
) -> Released:
    """Release the quarantined orders of ``flow`` (those whose last error contains ``reason``).

    Orders held after their write resume after it (never written twice); orders held because
    the ERP's copy could not be verified are kept for ``resolve``."""
    from integrator.state import Fact, State
    from integrator.state.ledger import ErrorKind

    out = Released()
    ledger = ledger_for(project, store, flow)
    policy = ledger.policy
    with locked(store, flow):
        for entry in store.journal.in_state(State.QUARANTINED, flow):
            if reason and reason.lower() not in (entry.last_error or "").lower():
                continue
            unsettleable = entry.held_state == State.SENDING and not (
                policy.can_check or policy.safe_resend
            )
            if entry.error_kind == ErrorKind.UNVERIFIED or unsettleable:
                out.kept.append(entry.order_number)
                continue
            why = f"released by {who}" + (f": {note}" if note else "")
            apply_fact(ledger, entry, Fact.RELEASED, f"{why} (was quarantined: {entry.last_error})")
            out.released.append(entry.order_number)
    return out


def prepare_replay(
    project: Project, store: Store, number: str, flow: str | None, force: bool, who: str, how: str
) -> str:
    """The flow to replay order ``number`` in, after the checks: an order whose last write may
    have reached the ERP is refused unless ``force`` (then it is resolved to be written again,
    an event naming ``who``). ``how``: the words naming the force (``replay --force``)."""
    from integrator.state import Fact, State
    from integrator.state.ledger import ErrorKind

    name = flow_of(store, number, flow)
    entry = store.journal.entry(name, number)
    assert entry is not None
    held = entry.held_state if entry.state == State.QUARANTINED else entry.state
    unknown = held == State.SENDING or entry.error_kind == ErrorKind.UNVERIFIED
    if unknown and not force:
        raise ActionRefused(
            f"order {number} may already be in the ERP (its last write's outcome is "
            "unknown); check the ERP, then `integrator resolve NUMBER --as-sent` or "
            f"`--resend` (or {how})"
        )
    if unknown:
        with locked(store, name):
            apply_fact(
                ledger_for(project, store, name),
                entry,
                Fact.RESOLVED_RESEND,
                f"{how} by {who}: the write is repeated",
            )
    return name


def resolve(
    project: Project,
    store: Store,
    number: str,
    flow: str | None,
    *,
    as_sent: bool,
    response: Any,
    erp_ref: str | None,
    who: str,
) -> str:
    """Settle order ``number`` by hand: the ERP has it (``as_sent``, with its answer) or it
    does not (written again on the next run). Returns the flow's name."""
    from integrator.state import Fact

    name = flow_of(store, number, flow)
    ledger = ledger_for(project, store, name)
    with locked(store, name):
        entry = store.journal.entry(name, number)  # read under the lock: no run moves it
        assert entry is not None
        if as_sent:
            apply_fact(
                ledger,
                entry,
                Fact.RESOLVED_SENT,
                f"resolved by {who}: the ERP has it",
                response=response,
                erp_ref=erp_ref,
            )
        else:
            apply_fact(ledger, entry, Fact.RESOLVED_RESEND, f"resolved by {who}: write it again")
    return name

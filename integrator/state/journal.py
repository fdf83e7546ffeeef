"""The journal's storage: where each order stands, its events, ``log.`` rows and deliveries.

Anyone may read it. Only the ledger (``state/ledger.py``) changes an order's state: it calls
:meth:`Journal.write`, which writes a row change, its events and ``log.`` rows in one
transaction, so the history can always explain the state. Run-level notes (a watermark moved,
a row the source could not use) go through :meth:`Journal.note`; they change no state.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select

from integrator.state.clock import now
from integrator.state.entries import Delivery, JournalEntry, Transition
from integrator.state.schema import (
    deliveries,
    events,
    journal,
    order_log,
    pending_events,
    runs,
    watermarks,
)

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["Delivery", "Journal", "JournalEntry", "Transition"]

_INSERT_EVENT = insert(events)


class Journal:
    """The ``journal``, ``events``, ``order_log`` and ``deliveries`` tables."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ reads
    def entry(self, flow: str, number: str) -> JournalEntry | None:
        """The journal row of one order, or None when never seen."""
        sql = self.store.sql
        with self.store.read_cursor() as cur:
            cur.execute(sql.select_entry, sql.row({"k_flow": flow, "k_number": number}))
            row = cur.fetchone()
            names = [d[0] for d in cur.description or ()]
        if row is None:
            return None
        return self._entry(dict(zip(names, row, strict=True)))

    def _entry(self, m: Mapping[str, Any]) -> JournalEntry:
        return JournalEntry(
            flow=m["flow"],
            order_number=m["order_number"],
            order_pk=m["order_pk"],
            state=m["state"],
            attempts=m["attempts"],
            next_try=m["next_try"],
            error_kind=m["error_kind"],
            last_error=m["last_error"],
            erp_ref=m["erp_ref"],
            request=_loads(m["request_json"]),
            response=_loads(m["response_json"]),
            updated_at=self.store.sql.timestamp(m["updated_at"]),
            target_id=m.get("target_id"),
            held_state=m.get("held_state"),
            repeatable=bool(m.get("repeatable")),
        )

    def states(self, flow: str, numbers: Iterable[str]) -> dict[str, str]:
        """Journal states of the given orders (absent ones left out)."""
        wanted = list(numbers)
        out: dict[str, str] = {}
        with self.store.engine.connect() as c:
            for i in range(0, len(wanted), 500):
                q = select(journal.c.order_number, journal.c.state).where(
                    journal.c.flow == flow, journal.c.order_number.in_(wanted[i : i + 500])
                )
                out.update({str(n): str(s) for n, s in c.execute(q)})
        return out

    def done_at(self, flow: str, numbers: Iterable[str]) -> dict[str, dt.datetime]:
        """When each of these orders became done (those that are done)."""
        wanted = list(numbers)
        out: dict[str, dt.datetime] = {}
        with self.store.engine.connect() as c:
            for i in range(0, len(wanted), 500):
                q = select(journal.c.order_number, journal.c.updated_at).where(
                    journal.c.flow == flow,
                    journal.c.state == "done",
                    journal.c.order_number.in_(wanted[i : i + 500]),
                )
                for n, at in c.execute(q):
                    stamp = self.store.sql.timestamp(at)
                    if stamp is not None:
                        out[str(n)] = stamp
        return out

    def targets(self, flow: str) -> set[str]:
        """The connectors (ConnectorIds) this flow delivered to, by its journal."""
        q = select(journal.c.target_id).where(
            journal.c.flow == flow, journal.c.target_id.is_not(None)
        )
        with self.store.engine.connect() as c:
            return {str(t) for (t,) in c.execute(q.distinct())}

    def flows(self) -> set[str]:
        """Every flow the journal knows."""
        with self.store.engine.connect() as c:
            return {str(f) for (f,) in c.execute(select(journal.c.flow).distinct())}

    def adopt(self, flow: str, earlier: Iterable[str]) -> int:
        """A renamed flow takes the history of its earlier names (journal, events, ``log.``
        rows, deliveries, watermark, queued events, runs), in one transaction. Returns how many
        orders it took."""
        names = [n for n in earlier if n != flow]
        if not names:
            return 0
        with self.store.transaction() as c:
            moved = c.execute(
                journal.update().where(journal.c.flow.in_(names)).values(flow=flow)
            ).rowcount
            for table in (events, order_log, deliveries, pending_events, runs, watermarks):
                c.execute(table.update().where(table.c.flow.in_(names)).values(flow=flow))
        return int(moved)

    def in_state(
        self, states: str | Iterable[str], flow: str | None = None, *, older_than: float = 0.0,
        limit: int | None = None, sample: bool = False,
    ) -> list[JournalEntry]:  # fmt: skip
        """Rows in one of ``states`` (of one flow when given), oldest change first (``sample``:
        in random order, so that a limit does not always return the same rows); ``older_than``:
        only rows unchanged for that many seconds."""
        wanted = [states] if isinstance(states, str) else list(states)
        order = func.random() if sample else journal.c.updated_at
        q = select(journal).where(journal.c.state.in_(wanted)).order_by(order)
        if flow:
            q = q.where(journal.c.flow == flow)
        if older_than > 0:
            q = q.where(journal.c.updated_at < now() - dt.timedelta(seconds=older_than))
        if limit is not None:
            q = q.limit(limit)
        with self.store.engine.connect() as c:
            return [self._entry(dict(r._mapping)) for r in c.execute(q)]

    def flows_of(self, number: str) -> list[str]:
        """The flows whose journal knows order ``number``."""
        q = select(journal.c.flow).where(journal.c.order_number == number).order_by(journal.c.flow)
        with self.store.engine.connect() as c:
            return [str(f) for (f,) in c.execute(q)]

    def count_states(self, flow: str) -> dict[str, int]:
        """How many orders of ``flow`` are in each journal state."""
        q = select(journal.c.state, func.count()).where(journal.c.flow == flow)
        with self.store.engine.connect() as c:
            return {str(s): int(n) for s, n in c.execute(q.group_by(journal.c.state))}

    def history(self, number: str, flow: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Journal rows, events, ``log.`` attributes and deliveries of one order, oldest
        first."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.store.engine.connect() as c:
            for name, table, order in (
                ("journal", journal, journal.c.flow),
                ("events", events, events.c.id),
                ("log", order_log, order_log.c.id),
                ("deliveries", deliveries, deliveries.c.id),
            ):
                q = select(table).where(table.c.order_number == number).order_by(order)
                if flow:
                    q = q.where(table.c.flow == flow)
                out[name] = [dict(r._mapping) for r in c.execute(q)]
        return out

    def delivered(
        self, flow: str, number: str, kind: str, connector: str, connector_id: str
    ) -> int | None:
        """The run that delivered order ``number`` by ``kind`` to the connector with this
        ConnectorId, if any. A delivery with no ConnectorId (a connector without one, or one
        recorded by 0.1.0, which kept none) counts for the connector of that Name."""
        by_name = (deliveries.c.connector == connector) & (deliveries.c.connector_id == "")
        target = (deliveries.c.connector_id == connector_id) | by_name if connector_id else by_name
        q = (
            select(deliveries.c.run_id)
            .where(
                deliveries.c.flow == flow,
                deliveries.c.order_number == number,
                deliveries.c.kind == kind,
                target,
            )
            .limit(1)
        )
        with self.store.engine.connect() as c:
            row = c.execute(q).first()
        return None if row is None else int(row[0] or 0)

    # ----------------------------------------------------------------- writes
    def write(
        self,
        flow: str,
        number: str,
        run_id: int | None,
        change: Transition,
        *,
        earlier: Iterable[Transition] = (),
        log: Mapping[str, str] | None = None,
        delivery: Delivery | None = None,
        defer: bool = False,
    ) -> None:
        """The ledger's write: the row's new state and fields (``earlier`` transitions' fields
        under ``change``'s), an event per transition, ``log.`` rows and a delivery, in one
        transaction. ``defer``: see :meth:`Store.write`. Values are stored as given: the
        ledger has redacted them."""
        earlier = list(earlier)
        values: dict[str, Any] = {}
        for t in earlier:
            values.update(t.fields)
        values.update(change.fields)
        values.update(state=change.state, updated_at=change.at, run_id=run_id)
        key = {"k_flow": flow, "k_number": number}
        rows = [
            _event_row(flow, number, run_id, t.state, t.message, t.at, t.fact)
            for t in (*earlier, change)
        ]

        def write(c: Connection) -> None:
            sql = self.store.sql
            cur = c.connection.cursor()
            try:
                cur.execute(sql.update_entry(tuple(values)), sql.row({**values, **key}))
                if cur.rowcount == 0:
                    values.setdefault("attempts", 0)
                    row = {**values, "flow": flow, "order_number": number}
                    cur.execute(sql.insert_entry(tuple(row)), sql.row(row))
                cur.executemany(sql.insert_event, [sql.row(r) for r in rows])
                if log:
                    cur.executemany(
                        sql.insert_log,
                        [sql.row(r) for r in _log_rows(flow, number, run_id, change.at, log)],
                    )
                if delivery is not None:
                    cur.execute(
                        sql.insert_delivery,
                        sql.row(
                            {
                                "flow": flow,
                                "order_number": number,
                                "run_id": run_id,
                                "at": change.at,
                                "kind": delivery.kind,
                                "connector": delivery.connector,
                                "connector_id": delivery.connector_id,
                                "note": delivery.note,
                            }
                        ),
                    )
            finally:
                cur.close()

        self.store.write(write, defer=defer)

    def note(
        self,
        flow: str,
        number: str | None,
        run_id: int | None,
        label: str,
        message: str,
        fact: str = "",
    ) -> None:
        """An event that changes no state (a run-level note, an export warning, a fact kept
        in every state)."""
        with self.store.transaction() as c:
            c.execute(_INSERT_EVENT, _event_row(flow, number, run_id, label, message, now(), fact))


def _event_row(
    flow: str,
    number: str | None,
    run_id: int | None,
    state: str,
    message: str,
    at: dt.datetime,
    fact: str,
) -> dict[str, Any]:
    return {
        "flow": flow,
        "order_number": number,
        "run_id": run_id,
        "at": at,
        "state": state,
        "message": message,
        "fact": fact or None,
    }


def _log_rows(
    flow: str, number: str, run_id: int | None, at: dt.datetime, attrs: Mapping[str, str]
) -> list[dict[str, Any]]:
    return [
        {"flow": flow, "order_number": number, "run_id": run_id, "at": at, "key": k, "value": v}
        for k, v in attrs.items()
    ]


def _loads(value: str | None) -> Any:
    return json.loads(value) if value else None

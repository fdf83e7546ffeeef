"""State: the store (SQLite or PostgreSQL) and the ledger, the one owner of order state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
    from integrator.state.journal import JournalEntry
    from integrator.state.ledger import Fact, Ledger, LedgerError, Policy, State
    from integrator.state.runs import RunStatus
    from integrator.state.store import Store

__all__ = ["Fact", "JournalEntry", "Ledger", "LedgerError", "Policy", "RunStatus", "State", "Store"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Fact": "ledger",
        "JournalEntry": "journal",
        "Ledger": "ledger",
        "LedgerError": "ledger",
        "Policy": "ledger",
        "RunStatus": "runs",
        "State": "ledger",
        "Store": "store",
    },
)

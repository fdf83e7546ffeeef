"""State: the store (SQLite or PostgreSQL) and the ledger, the one owner of order state."""

from __future__ import annotations

from integrator.state.journal import JournalEntry
from integrator.state.ledger import Fact, Ledger, LedgerError, Policy, State
from integrator.state.runs import RunStatus
from integrator.state.store import Store

__all__ = ["Fact", "JournalEntry", "Ledger", "LedgerError", "Policy", "RunStatus", "State", "Store"]

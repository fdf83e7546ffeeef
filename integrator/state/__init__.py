"""State: the store (SQLite or PostgreSQL) holding runs, the ledger, events and log attributes."""

from __future__ import annotations

from integrator.state.store import JournalEntry, Store

__all__ = ["JournalEntry", "Store"]

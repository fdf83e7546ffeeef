"""Delta-polling positions: per flow, the last modification time read up to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update

from integrator.state.clock import now
from integrator.state.schema import watermarks

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["Watermarks"]


class Watermarks:
    """The ``watermarks`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, flow: str) -> str | None:
        """The flow's watermark, or None before its first run."""
        with self.store.engine.connect() as c:
            value = c.execute(
                select(watermarks.c.value).where(watermarks.c.flow == flow)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def set(self, flow: str, value: str) -> None:
        """Move the flow's watermark (the caller decides it is safe)."""
        with self.store.transaction() as c:
            done = c.execute(
                update(watermarks)
                .where(watermarks.c.flow == flow)
                .values(value=value, updated_at=now())
            ).rowcount
            if not done:
                c.execute(insert(watermarks).values(flow=flow, value=value, updated_at=now()))

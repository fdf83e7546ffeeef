"""Pick a connector the way Omnium does: ConnectorId → market → global by Name."""

from __future__ import annotations

from collections.abc import Sequence

from integrator.config.model import ConnectorConfig

__all__ = ["resolve_connector"]


def resolve_connector(
    connectors: Sequence[ConnectorConfig],
    name: str,
    *,
    connector_id: str = "",
    market: str = "",
) -> ConnectorConfig | None:
    """The connector for ``name`` (case-sensitive), or None when there is none.

    An explicit ``connector_id`` wins; then one enabled for ``market``; then the global one
    (no market lists). ``DisabledForMarkets`` always excludes.
    """
    if connector_id:
        return next((c for c in connectors if c.connector_id == connector_id), None)
    named = [c for c in connectors if c.name == name]
    if market:
        named = [c for c in named if market not in c.disabled_for_markets]
        specific = [c for c in named if market in c.enabled_for_markets]
        if specific:
            return specific[0]
    return next((c for c in named if not c.enabled_for_markets), None)

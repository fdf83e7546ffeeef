"""Pick a connector the way Omnium does: ConnectorId → market → market group → global."""

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
    market_groups: Sequence[str] = (),
) -> ConnectorConfig | None:
    """The connector for ``name`` (case-sensitive), or None when there is none.

    An explicit ``connector_id`` wins; then one enabled for ``market``; then one enabled for
    one of the market's ``market_groups``; then the global one (no market or group lists).
    ``DisabledForMarkets`` always excludes, whatever enables it.
    """
    if connector_id:
        return next((c for c in connectors if c.connector_id == connector_id), None)
    named = [c for c in connectors if c.name == name]
    if market:
        named = [c for c in named if market not in c.disabled_for_markets]
        specific = [c for c in named if market in c.enabled_for_markets]
        if specific:
            return specific[0]
    for group in market_groups:
        grouped = [c for c in named if group in c.enabled_for_market_groups]
        if grouped:
            return grouped[0]
    return next(
        (c for c in named if not c.enabled_for_markets and not c.enabled_for_market_groups), None
    )

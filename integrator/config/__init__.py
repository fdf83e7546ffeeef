"""Configuration: config.yaml and flows/*.yaml, validated at load, then frozen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
    from integrator.config.load import load_app, load_flow, load_flows
    from integrator.config.model import (
        AppConfig,
        ConnectorConfig,
        FlowConfig,
        StageSpec,
    )

__all__ = [
    "AppConfig",
    "ConnectorConfig",
    "FlowConfig",
    "StageSpec",
    "load_app",
    "load_flow",
    "load_flows",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AppConfig": "model",
        "ConnectorConfig": "model",
        "FlowConfig": "model",
        "StageSpec": "model",
        "load_app": "load",
        "load_flow": "load",
        "load_flows": "load",
    },
)

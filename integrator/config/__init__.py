"""Configuration: config.yaml and flows/*.yaml, validated at load, then frozen."""

from __future__ import annotations

from integrator.config.load import load_app, load_flow, load_flows
from integrator.config.model import AppConfig, ConnectorConfig, FlowConfig, StageSpec, TokenLogin

__all__ = [
    "AppConfig",
    "ConnectorConfig",
    "FlowConfig",
    "StageSpec",
    "TokenLogin",
    "load_app",
    "load_flow",
    "load_flows",
]

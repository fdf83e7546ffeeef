"""Mapping: Jolt chains (jolt-py), path selectors and ``${...}`` templates."""

from __future__ import annotations

from integrator.mapping.jolt import JoltMapping, MappingSpecError, apply_chain, spec_warnings
from integrator.mapping.paths import compile_path, render, render_json, select

__all__ = [
    "JoltMapping",
    "MappingSpecError",
    "apply_chain",
    "compile_path",
    "render",
    "render_json",
    "select",
    "spec_warnings",
]

"""Mapping: Jolt chains (jolt-py), path selectors and ``${...}`` templates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
    from integrator.mapping.expr import render, render_value
    from integrator.mapping.jolt import JoltMapping, MappingSpecError, apply_chain, spec_warnings
    from integrator.mapping.paths import compile_path, select

__all__ = [
    "JoltMapping",
    "MappingSpecError",
    "apply_chain",
    "compile_path",
    "render",
    "render_value",
    "select",
    "spec_warnings",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "JoltMapping": "jolt",
        "MappingSpecError": "jolt",
        "apply_chain": "jolt",
        "spec_warnings": "jolt",
        "compile_path": "paths",
        "render": "expr",
        "render_value": "expr",
        "select": "paths",
    },
)

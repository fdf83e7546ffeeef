"""Mapping: Jolt chains (jolt-py), path selectors and ``${...}`` templates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__ = lazy_exports(
    __name__,
    {
        "JoltMapping": "jolt",
        "MappingSpecError": "jolt",
        "apply_chain": "jolt",
        "spec_warnings": "jolt",
        "compile_path": "paths",
        "render": "paths",
        "render_json": "paths",
        "select": "paths",
    },
)

"""Scripting: user Python scripts called per order, in worker processes.

Exports resolve lazily, so that a worker process (which imports ``integrator.scripting.worker``)
loads nothing but the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integrator.scripting.native import SCRIPT_ERROR, Script, as_mapping_data, load_script
    from integrator.scripting.pool import ScriptPool

__all__ = ["SCRIPT_ERROR", "Script", "ScriptPool", "as_mapping_data", "load_script"]


def __getattr__(name: str) -> Any:
    if name == "ScriptPool":
        from integrator.scripting import pool

        return pool.ScriptPool
    if name in __all__:
        from integrator.scripting import native

        return getattr(native, name)
    raise AttributeError(name)

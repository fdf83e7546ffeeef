"""Scripting: user Python scripts called per order."""

from __future__ import annotations

from integrator.scripting.native import SCRIPT_ERROR, Script, as_mapping_data, load_script
from integrator.scripting.pool import ScriptPool

__all__ = ["SCRIPT_ERROR", "Script", "ScriptPool", "as_mapping_data", "load_script"]

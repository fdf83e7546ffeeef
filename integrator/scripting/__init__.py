"""Scripting: user Python scripts called per order."""

from __future__ import annotations

from integrator.scripting.native import SCRIPT_ERROR, Script, as_mapping_data, load_script

__all__ = ["SCRIPT_ERROR", "Script", "as_mapping_data", "load_script"]

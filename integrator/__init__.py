"""integrator: a runner for scheduled integration flows between Omnitron-like OMSs and ERPs."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.2.0.dev0"

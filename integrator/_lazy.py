"""Package exports that import their module on first use (PEP 562), so that importing one
light submodule (``integrator.connectors.redact``) does not import its heavy siblings
(``integrator.connectors.http`` and requests): a command pays only for what it uses."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each export to the submodule
    that defines it. Packages also import the names under ``TYPE_CHECKING`` for mypy."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    return __getattr__

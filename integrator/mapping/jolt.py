"""Jolt chains over jolt-py (module ``pyjolt``), built once per flow.

``apply_chain`` is the adapter the conformance suite calls; flows use :class:`JoltMapping`,
which builds the chain once and reports a bad spec with the operation's index.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from pyjolt import Chainr

from integrator.errors import IntegratorError

__all__ = ["JoltMapping", "MappingSpecError", "apply_chain", "spec_warnings"]

_UNKNOWN_FN = re.compile(r"Unknown modify function '([^']+)'")


class MappingSpecError(IntegratorError):
    """A Jolt chain that cannot be built, with the index of the bad operation."""

    def __init__(self, message: str, index: int | None = None) -> None:
        where = f"operation [{index}]: " if index is not None else ""
        super().__init__(where + message)
        self.index = index


def _build(spec: Any) -> tuple[Chainr, list[str]]:
    """Build a Chainr; return it with the unknown modify functions it met."""
    if not isinstance(spec, list):
        raise MappingSpecError(f"a Jolt chain is a list of operations, got {type(spec).__name__}")
    if not spec:
        raise MappingSpecError("the Jolt chain is empty: add at least one operation")
    unknown: list[str] = []
    for i, entry in enumerate(spec):
        if not isinstance(entry, dict) or "operation" not in entry:
            raise MappingSpecError("expected {'operation': ..., 'spec': ...}", i)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                Chainr.from_spec([entry])
            except Exception as exc:  # noqa: BLE001 - jolt-py raises several types for bad specs
                raise MappingSpecError(f"{entry.get('operation')}: {exc}", i) from None
        for w in caught:
            m = _UNKNOWN_FN.search(str(w.message))
            if m:
                unknown.append(f"operation [{i}]: unknown modify function {m.group(1)!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported once above, not per build
        return Chainr.from_spec(spec), unknown


def spec_warnings(spec: Any) -> list[str]:
    """Warnings for a buildable chain (unknown modify functions: Java Jolt tolerates them)."""
    return _build(spec)[1]


def apply_chain(spec: Any, data: Any, context: dict[str, Any] | None = None) -> Any:
    """Apply a Jolt chain to ``data``; raise MappingSpecError for an invalid chain."""
    chain, _ = _build(spec)
    return chain.apply(data, context)


class JoltMapping:
    """A Jolt chain built once, applied per order."""

    def __init__(self, spec: Any) -> None:
        self.chain, self.warnings = _build(spec)

    def apply(self, data: Any, context: dict[str, Any] | None = None) -> Any:
        """Transform one document."""
        return self.chain.apply(data, context)

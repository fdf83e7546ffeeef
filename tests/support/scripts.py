"""Helpers for tests that call scripts through a real ScriptPool."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from integrator.scripting import ScriptPool, load_script

__all__ = ["ORDER", "call", "write"]

ORDER = {
    "number": "1001",
    "orderitem_set": [{"pk": 1, "price": "10.50"}, {"pk": 2, "price": "4.50"}],
}


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def call(
    pool: ScriptPool,
    path: Path,
    attrs: dict[str, str] | None = None,
    entry: str = "process",
    timeout: float = 30,
    **args: Any,
) -> dict[str, Any]:
    script, issues = load_script(path, entry, str(path), "script", timeout)
    assert script is not None, issues
    if not args:
        args = {"data": ORDER, "order": ORDER}
    return pool.call(
        path=str(path),
        entry=entry,
        runtime=script.runtime,
        args=args,
        attributes=attrs or {},
        timeout=timeout,
    )

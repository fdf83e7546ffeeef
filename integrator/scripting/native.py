"""User scripts: found, checked and described without running them; called in worker processes.

Two runtimes, chosen per script from its code:

- ``native``: a module-level ``def process(data, attributes)`` (or ``check_response(request,
  response, attributes)``), each declaring only the arguments it needs;
- ``compat``: Akinon Integrator / NiFi ExecuteScript code (``session``, ``input_text``,
  ``outputStream``, a ``StreamCallback``), run unchanged; see :mod:`integrator.scripting.compat`.

A script's failure fails its order only: the error, with the script's file and line, goes to
``log.script.error``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrator.errors import ConfigIssue, PermanentError
from integrator.scripting.compat import attribute_text
from integrator.scripting.worker import ALIASES, SCRIPT_ERROR

if TYPE_CHECKING:
    from integrator.scripting.pool import ScriptPool

__all__ = ["SCRIPT_ERROR", "Script", "as_mapping_data", "load_script", "syntax_message"]

# The arguments each entry point may declare.
ENTRY_POINTS: dict[str, set[str]] = {
    "process": {"data", "attributes", "order"},
    "check_response": {
        "request",
        "request_data",
        "response",
        "response_data",
        "attributes",
        "order",
    },
}
_COMPAT_WANTS = {
    "process": frozenset({"data"}),
    "check_response": frozenset({"request", "response"}),
}
COMPAT_NAMES = {"session", "input_text", "outputStream", "StreamCallback", "flowFile"}
PY2_HINTS = (
    "Missing parentheses in call to 'print'",
    "multiple exception types must be parenthesized",
    "invalid hexadecimal literal",
    "leading zeros in decimal integer literals",
)


class Script:
    """A checked user script: its path, entry point and runtime."""

    def __init__(
        self,
        path: Path,
        entry: str,
        runtime: str,
        timeout: float = 300.0,
        wants: frozenset[str] | None = None,
    ) -> None:
        self.path, self.entry, self.runtime, self.timeout = path, entry, runtime, timeout
        # The arguments the script reads: only those cross to the worker.
        self.wants = wants if wants is not None else _COMPAT_WANTS[entry]

    def run(
        self, pool: ScriptPool, attributes: dict[str, str], **args: Any
    ) -> tuple[Any, str | None]:
        """Call the script in ``pool``; returns (result, raw text output or None).

        ``attributes`` is updated in place with what the script wrote (strings). A failure
        sets ``log.script.error`` and raises PermanentError.
        """
        reply = pool.call(
            path=str(self.path),
            entry=self.entry,
            runtime=self.runtime,
            args={k: v for k, v in args.items() if k in self.wants},
            attributes=dict(attributes),
            timeout=self.timeout,
        )
        attributes.clear()
        attributes.update(
            {str(k): attribute_text(v) for k, v in reply.get("attributes", {}).items()}
        )
        for level, message in reply.get("log") or []:
            import structlog  # loaded when a script first logs (test-script starts without it)

            log = structlog.get_logger("integrator.script")
            getattr(log, level if level in ("debug", "info", "warning", "error") else "info")(
                "script_log", script=self.path.name, message=message
            )
        if not reply.get("ok"):
            raise PermanentError(f"script error: {reply.get('error')}")
        return reply.get("result"), reply.get("raw")


def syntax_message(path: Path, exc: SyntaxError) -> str:
    """``script scripts/x.py line 3: invalid syntax: print "x"`` plus a hint for Python 2."""
    line = (exc.text or "").strip()
    msg = f"script {path} line {exc.lineno}: syntax error: {exc.msg}"
    if line:
        msg += f": {line}"
    if any(h in (exc.msg or "") for h in PY2_HINTS):
        msg += (
            " (this is Python 2 syntax; integrator runs scripts on Python 3: "
            'write print("x"), except E as e)'
        )
    return msg


def load_script(
    path: Path, entry: str, file: str, key: str, timeout: float = 300.0
) -> tuple[Script | None, list[ConfigIssue]]:
    """Read and check ``path`` without running it; issues name the flow file and key."""

    def issue(msg: str) -> tuple[None, list[ConfigIssue]]:
        return None, [ConfigIssue(file, key, msg)]

    if not path.is_file():
        return issue(f"script {path} not found")
    try:
        source = path.read_bytes()
        tree = ast.parse(source, str(path))
        compile(tree, str(path), "exec")
    except SyntaxError as exc:
        return issue(syntax_message(path, exc))
    except (OSError, ValueError) as exc:
        return issue(f"script {path} cannot be read: {exc}")
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if entry in funcs:
        params = [a.arg for a in funcs[entry].args.args]
        bad = [p for p in params if p not in ENTRY_POINTS[entry]]
        if bad:
            return issue(
                f"{path}: {entry}() declares unknown argument(s) {', '.join(bad)}; "
                f"allowed: {', '.join(sorted(ENTRY_POINTS[entry]))}"
            )
        wants = frozenset(ALIASES.get(p, p) for p in params if p != "attributes")
        return Script(path, entry, "native", timeout, wants), []
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    if names & COMPAT_NAMES:
        return Script(path, entry, "compat", timeout), []
    return issue(
        f"script {path} has no function {entry}() and no ExecuteScript-style code "
        f"(session, input_text, outputStream); define def {entry}({', '.join(_expected(entry))})"
    )


def _expected(entry: str) -> list[str]:
    return ["data", "attributes"] if entry == "process" else ["request", "response", "attributes"]


def as_mapping_data(value: Any) -> Mapping[str, Any]:
    """Check a check_response result: ``{"order": {...}, "order_items": [...]}``."""
    if not isinstance(value, dict):
        raise PermanentError(
            f"check_response must return a dict like {{'order': {{}}, 'order_items': []}}, "
            f"got {type(value).__name__}"
        )
    items = value.get("order_items", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) and "pk" in i for i in items):
        raise PermanentError("check_response: order_items must be a list of {'pk': ..., ...}")
    return value

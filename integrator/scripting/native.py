"""Native user scripts: ``process(data, attributes)`` and ``check_response(request, response,
attributes)``, each declaring only the arguments it needs (checked when the script loads).

A script's exception fails its order only: the error, with the script's file and line, goes to
``log.script.error``. Isolation in worker processes with a time limit is not here yet.
"""

from __future__ import annotations

import importlib.util
import inspect
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from integrator.errors import ConfigIssue, PermanentError

__all__ = ["SCRIPT_ERROR", "Script", "load_script"]

SCRIPT_ERROR = "log.script.error"

# The arguments each entry point may declare, with their accepted aliases.
ENTRY_POINTS: dict[str, dict[str, str]] = {
    "process": {"data": "data", "attributes": "attributes", "order": "order"},
    "check_response": {
        "request": "request",
        "request_data": "request",
        "response": "response",
        "response_data": "response",
        "attributes": "attributes",
        "order": "order",
    },
}


class Script:
    """A loaded user script with its entry point and the arguments it wants."""

    def __init__(self, path: Path, module: ModuleType, entry: str) -> None:
        self.path, self.module, self.entry = path, module, entry
        self.func: Callable[..., Any] = getattr(module, entry)
        self.params = list(inspect.signature(self.func).parameters)

    def call(self, attributes: dict[str, str], **available: Any) -> Any:
        """Call the entry point with the arguments it declared; errors become PermanentError."""
        names = ENTRY_POINTS[self.entry]
        kwargs = {
            p: (attributes if names[p] == "attributes" else available.get(names[p]))
            for p in self.params
        }
        try:
            return self.func(**kwargs)
        except Exception as exc:  # noqa: BLE001 - any script error fails only its order
            detail = self.describe_error(exc)
            attributes[SCRIPT_ERROR] = detail
            raise PermanentError(f"script error: {detail}", stage=self.entry) from None

    def describe_error(self, exc: BaseException) -> str:
        """``ValueError: bad sku (scripts/enrich.py, line 12)``: the deepest frame of the script."""
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if Path(frame.filename).resolve() == self.path.resolve():
                line = frame.lineno
        where = f" ({self.path.name}, line {line})" if line else f" ({self.path.name})"
        return f"{type(exc).__name__}: {exc}{where}"


def load_script(
    path: Path, entry: str, file: str, key: str
) -> tuple[Script | None, list[ConfigIssue]]:
    """Import ``path`` and check ``entry``'s signature; issues name the flow file and key."""

    def issue(msg: str) -> tuple[None, list[ConfigIssue]]:
        return None, [ConfigIssue(file, key, msg)]

    if not path.is_file():
        return issue(f"script {path} not found")
    spec = importlib.util.spec_from_file_location(f"integrator_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        return issue(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        return issue(f"script {path} line {exc.lineno}: syntax error: {exc.msg}")
    except Exception as exc:  # noqa: BLE001 - a module that fails at import is a config error
        return issue(f"script {path} fails when imported: {type(exc).__name__}: {exc}")
    func = getattr(module, entry, None)
    if not callable(func):
        return issue(
            f"script {path} has no function {entry}(); define "
            f"def {entry}({', '.join(_expected(entry))})"
        )
    allowed = ENTRY_POINTS[entry]
    params = inspect.signature(func).parameters
    bad = [p for p in params if p not in allowed]
    if bad:
        return issue(
            f"{path}: {entry}() declares unknown argument(s) {', '.join(bad)}; "
            f"allowed: {', '.join(allowed)}"
        )
    return Script(path, module, entry), []


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

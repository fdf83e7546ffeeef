"""Small typed readers for option mappings that record an issue instead of raising."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from integrator.config.yamlfile import YamlDoc, join_key
from integrator.errors import ConfigIssue

__all__ = ["Options", "header_problem"]

_NOT_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


def header_problem(value: str) -> str | None:
    """What keeps ``value`` from being an HTTP header's value, or None: a line break or another
    control character (the header would end there, the rest becoming headers of their own),
    or a character beyond ISO-8859-1, the only text HTTP/1.1 headers carry. Names the
    character and where it is, never the value (it may be a credential)."""
    bad = _NOT_IN_HEADER.search(value)
    if bad is None:
        return None
    char, at = bad.group(), bad.start()
    if char in "\r\n":
        return f"a line break (CR or LF) at position {at}, which would end the header there"
    if ord(char) < 0x100:
        return f"control character U+{ord(char):04X} at position {at}"
    return (
        f"character U+{ord(char):04X} ({char!r}) at position {at}, which an HTTP header cannot "
        "carry (only ISO-8859-1 text); leave it out, or encode the value (base64())"
    )


def clear_secret(doc: YamlDoc, raw: Any, key: str, issues: list[ConfigIssue]) -> None:
    """Secrets come from ${ENV} or ${file:...}; a literal in the YAML (``raw``, the value as
    written, before interpolation) is refused, a number too (``BearerToken: 123456789`` is
    read as one, and would be sent as the token)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, str) and raw and "${" not in raw:
        issues.append(
            doc.issue(
                key,
                "secret written in clear in the YAML; use ${ENV_VAR} or ${file:path} instead",
            )
        )


T = TypeVar("T")

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


class Options:
    """Typed access to one mapping of a YAML file, collecting every problem it meets."""

    def __init__(
        self, data: Any, doc: YamlDoc, key: str, issues: list[ConfigIssue], allowed: set[str]
    ) -> None:
        self.doc, self.key, self.issues = doc, key, issues
        if data is None:
            data = {}
        if not isinstance(data, dict):
            issues.append(doc.issue(key, f"expected a mapping, got {type(data).__name__}"))
            data = {}
        self.data: dict[str, Any] = data
        unknown = sorted(set(map(str, data)) - allowed)
        for name in unknown:
            issues.append(
                doc.issue(
                    join_key(key, name),
                    f"unknown option {name!r}; allowed: {', '.join(sorted(allowed)) or 'none'}",
                )
            )

    def sub(self, name: str) -> str:
        """The key path of option ``name``."""
        return join_key(self.key, name)

    def error(self, name: str, message: str) -> None:
        """Record a problem with option ``name``."""
        self.issues.append(self.doc.issue(self.sub(name), message))

    def get(
        self,
        name: str,
        typ: type[T],
        default: T | None = None,
        *,
        required: bool = False,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        """Option ``name`` of type ``typ`` (ints accepted for floats); ``default`` when absent."""
        if name not in self.data or self.data[name] is None:
            if required:
                self.error(name, f"required option is missing: expected {_TYPE_NAMES[typ]}")
            return default  # type: ignore[return-value]  # callers pass a default of type T
        value = self.data[name]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typ is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            self.error(name, f"expected {_TYPE_NAMES[typ]}, got {type(value).__name__}")
            return default  # type: ignore[return-value]  # see above
        if isinstance(value, float) and not math.isfinite(value):
            # .inf, -.inf and .nan pass most range checks (nan compares false to everything):
            # no option means "forever" by infinity (timeouts, seconds, rates).
            self.error(name, f"expected a finite number, got {value!r} (.inf and .nan are refused)")
            return default  # type: ignore[return-value]  # see above
        if check is not None:
            problem = check(value)
            if problem:
                self.error(name, problem)
                return default  # type: ignore[return-value]  # see above
        return value

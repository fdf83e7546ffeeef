"""Read a YAML file into plain data plus a map from key paths to line numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from integrator.errors import ConfigIssue

__all__ = ["YamlDoc", "join_key", "read_yaml"]


def join_key(parent: str, key: str | int) -> str:
    """Build a readable key path: ``stages[2].query_check.url``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


@dataclass
class YamlDoc:
    """A parsed YAML file: its data, its name and where each key sits."""

    file: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, key: str) -> int | None:
        """The line of ``key``, or of its closest parent that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            cut = max(key.rfind("."), key.rfind("["))
            key = key[:cut] if cut > 0 else ""
        return None

    def issue(self, key: str, message: str, severity: str = "error") -> ConfigIssue:
        """A ConfigIssue for ``key`` in this file."""
        return ConfigIssue(self.file, key, message, self.line(key), severity)


def _walk(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = join_key(path, str(key_node.value))
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = join_key(path, i)
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines)


def read_yaml(path: Path) -> tuple[YamlDoc | None, list[ConfigIssue]]:
    """Parse ``path``; a syntax error becomes one issue with its line, never a traceback."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [ConfigIssue(name, "", f"cannot read the file: {exc.strerror or exc}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        msg = f"invalid YAML: {problem}; check indentation and quoting near this line"
        return None, [ConfigIssue(name, "", msg, line)]
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    return YamlDoc(name, data, lines), []

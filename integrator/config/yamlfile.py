"""Read a YAML file into plain data plus a map from key paths to line numbers.

The file is refused, with its name and where, when it is not UTF-8, when a mapping repeats a
key (PyYAML keeps the last one silently), and when aliases would expand it beyond
:data:`MAX_NODES` nodes or :data:`MAX_DEPTH` levels. Aliases themselves are allowed (anchors
and ``<<`` merges are how people share a block), but every walker of this project (line
numbers, interpolation, option checks) follows them as copies, so a "billion laughs" of a few
hundred bytes would become 10⁹ nodes there. The expanded size is measured on the parser's
node graph, where an alias is one shared node, so the measure itself costs one visit per
distinct node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from integrator.errors import ConfigIssue

__all__ = ["MAX_DEPTH", "MAX_NODES", "YamlDoc", "decode_utf8", "join_key", "read_yaml"]

MAX_NODES = 50_000  # a large config.yaml has a few thousand; aliases counted as copies
MAX_DEPTH = 64  # config and flow files nest less than 10 levels

_MERGE = "tag:yaml.org,2002:merge"


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


def decode_utf8(raw: bytes, name: str) -> tuple[str | None, ConfigIssue | None]:
    """``raw`` as text, or an issue naming the first byte that is not UTF-8 (offset, line).

    A leading byte order mark is dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        return None, ConfigIssue(
            name,
            "",
            f"not UTF-8: byte 0x{bad} at byte offset {exc.start} cannot be decoded "
            f"({exc.reason}); save the file as UTF-8",
            line,
        )
    return text.removeprefix("\ufeff"), None


class _Refused(Exception):
    """The node graph is refused: ``node`` is where, ``message`` what."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node, self.message = node, message


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _measure(root: yaml.Node) -> None:
    """Refuse a graph whose expansion (aliases as copies) is too large, too deep or cyclic.

    Each distinct node is visited once: its expanded size and height are remembered, so an
    alias costs a lookup however large its target is. Recursion is bounded by MAX_DEPTH."""
    done: dict[int, tuple[int, int]] = {}  # id(node) → (expanded size, height)
    active: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in done:
            size, height = done[key]
        else:
            if key in active:
                raise _Refused(node, "an alias refers to a node that contains it (a cycle)")
            if depth > MAX_DEPTH:
                raise _Refused(node, f"nested more than {MAX_DEPTH} levels deep")
            active.add(key)
            size, height = 1, 0
            for child in _children(node):
                s, h = visit(child, depth + 1)
                size, height = size + s, max(height, h + 1)
                if size > MAX_NODES:
                    break
            active.discard(key)
            done[key] = (size, height)
        if size > MAX_NODES:
            raise _Refused(
                node,
                f"with its aliases expanded, this document has more than {MAX_NODES} nodes "
                "(an alias bomb?); write the values out, or use fewer aliases",
            )
        if depth + height > MAX_DEPTH:
            raise _Refused(node, f"with its aliases expanded, nested more than {MAX_DEPTH} deep")
        return size, height

    visit(root, 0)


_Dup = tuple[int, str, str, int]  # line, key, key path, line of the first one


def _walk(node: yaml.Node, path: str, lines: dict[str, int], dups: set[_Dup]) -> None:
    """Record the line of every key path, and every key a mapping repeats."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # `<<: *base`: its keys are overridden on purpose
                continue
            name = str(key_node.value)
            sub = join_key(path, name)
            line = key_node.start_mark.line + 1
            if name in seen:
                dups.add((line, name, sub, seen[name]))
            seen[name] = line
            lines[sub] = line
            _walk(value_node, sub, lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = join_key(path, i)
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines, dups)


def read_yaml(path: Path) -> tuple[YamlDoc | None, list[ConfigIssue]]:
    """Parse ``path``; every problem becomes an issue with its line, never a traceback.

    The document is None when the file cannot be parsed at all; duplicate keys come with the
    document (the last value kept), so that the rest of the file is checked too."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [ConfigIssue(name, "", f"cannot read the file: {exc.strerror or exc}")]
    text, problem = decode_utf8(raw, name)
    if text is None:
        assert problem is not None
        return None, [problem]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _measure(node)
        lines: dict[str, int] = {}
        dups: set[_Dup] = set()
        if node is not None:
            _walk(node, "", lines, dups)
        reported: dict[tuple[int, str], ConfigIssue] = {}  # an anchored block: once
        for line, key, sub, first in sorted(dups):
            reported.setdefault(
                (line, key),
                ConfigIssue(
                    name,
                    sub,
                    f"duplicate key {key!r} (first at line {first}); YAML would keep only "
                    "the last one: remove or rename one of them",
                    line,
                ),
            )
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        return None, [ConfigIssue(name, "", exc.message, exc.node.start_mark.line + 1)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at: int | None = mark.line + 1 if mark is not None else None
        problem_text = getattr(exc, "problem", None) or str(exc)
        msg = f"invalid YAML: {problem_text}; check indentation and quoting near this line"
        return None, [ConfigIssue(name, "", msg, at)]
    except RecursionError:
        return None, [ConfigIssue(name, "", f"invalid YAML: nested too deeply (> {MAX_DEPTH})")]
    finally:
        loader.dispose()
    # A duplicate key is an error, but the rest of the file is still checked (all at once).
    return YamlDoc(name, data, lines), list(reported.values())

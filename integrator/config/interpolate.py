"""``${VAR}`` interpolation from the environment and files, remembering which values are secret.

Forms: ``${VAR}`` (must be set), ``${VAR:-default}``, ``${file:/path/to/secret}`` (file content,
stripped). Values interpolated into secret-bearing keys are collected so the redactor can
scrub them from every log line, stored record and error message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from integrator.config.yamlfile import YamlDoc, join_key
from integrator.errors import ConfigIssue

__all__ = ["SECRET_KEY_RE", "interpolate", "is_secret_key"]

_REF = re.compile(r"\$\{(?!_order\.)([A-Za-z_][A-Za-z0-9_]*|file:[^}]+)(?::-([^}]*))?\}")
SECRET_KEY_RE = re.compile(
    r"(password|passwd|secret|token|auth_token|authorization|api[_-]?key|private[_-]?key"
    r"|connection[_-]?string|account[_-]?key|shared[_-]?access[_-]?key)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True for keys whose values must never be shown (Password, BearerToken, auth_token...)."""
    return bool(SECRET_KEY_RE.search(key))


def interpolate(
    doc: YamlDoc,
    env: Mapping[str, str],
    issues: list[ConfigIssue],
    secrets: set[str],
    base_dir: Path,
    *,
    lenient: bool = False,
) -> Any:
    """Return ``doc.data`` with every reference replaced; problems go to ``issues``.

    ``lenient``: an unset variable becomes "" without an issue (commands that only read the
    state store need no credentials).
    """

    def resolve(value: str, key: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name.startswith("file:"):
                fpath = Path(name[5:])
                fpath = fpath if fpath.is_absolute() else base_dir / fpath
                try:
                    out = fpath.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    issues.append(doc.issue(key, f"cannot read secret file {fpath}: {exc}"))
                    return ""
            elif name in env:
                out = env[name]
            elif default is not None:
                out = default
            elif lenient:
                return ""
            else:
                issues.append(
                    doc.issue(
                        key,
                        f"environment variable {name} is not set; export it "
                        f"or write ${{{name}:-default}} for a non-secret default",
                    )
                )
                return ""
            if is_secret_key(key.rsplit(".", 1)[-1]) and out:
                secrets.add(out)
            return out

        return _REF.sub(sub, value)

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, join_key(key, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, join_key(key, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return resolve(node, key)
        return node

    return walk(doc.data, "")

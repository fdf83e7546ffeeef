"""``${VAR}`` interpolation from the environment and files, remembering which values are secret.

Forms: ``${VAR}`` (must be set), ``${VAR:-default}``, ``${file:/path/to/secret}`` (file content,
stripped). Every other ``${…}`` is a run-time expression (:mod:`integrator.mapping.expr`): the
names of its roots (``_order``, ``vars``, ``login``, ``connector``, ``data``, ``attributes``)
are never environment variables. Values interpolated into secret-bearing keys are collected
so the redactor can scrub them from every log line, stored record and error message. A
secret-bearing key is one whose name looks like a secret (:func:`is_secret_key`), or the
``Value`` of a ``{Key, Value}`` pair whose ``Key`` does
(``Properties: [{Key: X-Api-Key, Value: ${KEY}}]``).

Refused, as issues: a default on a secret (``${TOKEN:-abc}``: a secret nobody set must not
quietly become a known value), and a secret shorter than :data:`MIN_SECRET` characters (too
weak, and the redactor could not mask it without mangling ordinary text, such as an ERP
reference holding the same four digits).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from integrator.config.yamlfile import YamlDoc, decode_utf8, join_key
from integrator.errors import ConfigIssue

__all__ = ["MIN_SECRET", "SECRET_KEY_RE", "interpolate", "is_secret_key", "secret_references"]

MIN_SECRET = 8  # characters

# ``${NAME}``, ``${NAME:-default}``, ``${file:PATH}``: resolved at load. A run-time root
# (``${data}``, ``${vars.x}``, ``${_order.x}``…) and any other expression are left for run time
# (:mod:`integrator.mapping.expr` states the rule).
_REF = re.compile(
    r"\$\{(?!(?:_order|vars|login|connector|data|attributes)\b)"
    r"([A-Za-z_][A-Za-z0-9_]*|file:[^}]+)(?::-([^}]*))?\}"
)
SECRET_KEY_RE = re.compile(
    r"(password|passwd|secret|token|auth_token|authorization|api[_-]?key|private[_-]?key"
    r"|connection[_-]?string|account[_-]?key|shared[_-]?access[_-]?key)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True for keys whose values must never be shown (Password, BearerToken, auth_token...)."""
    return bool(SECRET_KEY_RE.search(key))


# Keys that name a secret's place, not a secret: TokenUrl, TokenPath, TokenLogin.HeaderFormat.
_NOT_A_SECRET = re.compile(r"(url|uri|path|format|header)$", re.IGNORECASE)


def _holds_secret(key: str) -> bool:
    return is_secret_key(key) and not _NOT_A_SECRET.search(key)


def secret_references(text: str) -> list[str]:
    """The references in ``text`` whose values are secrets: ``${file:...}``, and variables
    named like a secret (``${ERP_PASSWORD}``; not ``${ERP_TOKEN_URL}``), as written."""
    return [
        m.group(0)
        for m in _REF.finditer(text)
        if m.group(1).startswith("file:") or _holds_secret(m.group(1))
    ]


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

    def resolve(value: str, key: str, secret: bool) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if secret and default is not None:
                issues.append(
                    doc.issue(
                        key,
                        f"a secret cannot have a default (${{{name}:-...}}): a secret nobody "
                        f"set must not become a value written in the YAML; write ${{{name}}} "
                        "and set it, or use ${file:path}",
                    )
                )
                default = None
            if name.startswith("file:"):
                fpath = Path(name[5:])
                fpath = fpath if fpath.is_absolute() else base_dir / fpath
                try:
                    text, problem = decode_utf8(fpath.read_bytes(), str(fpath))
                except OSError as exc:
                    issues.append(doc.issue(key, f"cannot read secret file {fpath}: {exc}"))
                    return ""
                if text is None:
                    assert problem is not None
                    issues.append(doc.issue(key, f"secret file {problem}"))
                    return ""
                out = text.strip()
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
                        f"environment variable {name} is not set; export it"
                        + ("" if secret else f" or write ${{{name}:-default}} for a default"),
                    )
                )
                return ""
            if (
                not secret
                and len(out) >= MIN_SECRET
                and (name.startswith("file:") or _holds_secret(name))
            ):
                # A value from a secret file, or a variable named like a secret
                # (ERP_CLIENT_SECRET), under a key that is not (a write path, a URL): masked
                # where shown all the same.
                secrets.add(out)
            if secret and out:
                secrets.add(out)
                if len(out) < MIN_SECRET and not lenient:
                    where = f"file {name[5:]}" if name.startswith("file:") else name
                    issues.append(
                        doc.issue(
                            key,
                            f"the secret from {where} has {len(out)} characters; use at least "
                            f"{MIN_SECRET} (a short secret is weak, and masking it in logs "
                            "would mangle ordinary text)",
                        )
                    )
            return out

        return _REF.sub(sub, value)

    def walk(node: Any, key: str, secret: bool) -> Any:
        if isinstance(node, dict):
            pair_secret = isinstance(node.get("Key"), str) and _holds_secret(node["Key"])
            return {
                k: walk(
                    v,
                    join_key(key, str(k)),
                    _holds_secret(str(k)) or (pair_secret and k == "Value"),
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v, join_key(key, i), secret) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return resolve(node, key, secret)
        return node

    return walk(doc.data, "", False)

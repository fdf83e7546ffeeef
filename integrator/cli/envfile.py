"""The ``.env`` convention: variables for a project kept in a file beside its config.yaml.

- Interactive commands read ``.env`` from the project's directory (the directory of
  ``config.yaml``, or of ``-c``) when they load the project. The environment wins over it.
- The daemon reads none unless told (``--env-file PATH``): a ``.env`` forgotten on a server
  must never fill in production variables silently.
- ``integrator sandbox`` writes one with the sandbox's values (its hosts and ports, its public
  test credentials) when the project has none, and never overwrites one.

The file is parsed by python-dotenv (imported only when a file is read). A line it cannot
parse, a name that is not a variable name, bytes that are not UTF-8: refused with the file
and line, never echoing the line (it may hold a secret).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click

from integrator.config.yamlfile import decode_utf8
from integrator.errors import ConfigIssue, ConfigurationError, UserError

__all__ = [
    "ENV_FILE",
    "EnvStatus",
    "load_env_file",
    "load_project_env",
    "project_env_path",
    "read_env_file",
    "sandbox_env_report",
    "unset_hint",
]

ENV_FILE = ".env"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNSET = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set")
_MAX_BYTES = 1 << 20  # a .env is a few lines; a larger one is not one


@dataclass
class EnvStatus:
    """What this process read, for the hint on unset variables."""

    config: Path  # the project's config.yaml as given (for the hint's command)
    looked: Path  # where the project's .env is (or would be)
    read: Path | None = None  # the file read, if any
    daemon: bool = False  # the daemon: reads only --env-file
    loaded: set[str] = field(default_factory=set)  # names the file set (not in the env)


_status: EnvStatus | None = None


def project_env_path(config: Path) -> Path:
    """The project's ``.env``: beside its config.yaml."""
    return config.parent / ENV_FILE


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of ``path`` (python-dotenv's syntax: ``NAME=value``, ``export NAME=...``,
    quotes, ``${VAR}`` expansion); a ConfigurationError lists every line it refuses, a
    UserError says why it cannot be read."""
    if not path.is_file():
        if path.exists():
            raise UserError(f"{path} is not a regular file; a .env file holds NAME=value lines")
        raise UserError(f"{path}: no such file; check the path")
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(
            f"cannot read {path}: {exc.strerror}; check its owner and mode (ls -l {path})"
        ) from None
    if len(raw) > _MAX_BYTES:
        raise ConfigurationError(
            [ConfigIssue(str(path), "", f"larger than {_MAX_BYTES} bytes; not a .env file")]
        )
    text, problem = decode_utf8(raw, str(path))
    if text is None:
        assert problem is not None
        raise ConfigurationError([problem])

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    issues: list[ConfigIssue] = []
    for b in parse_stream(io.StringIO(text)):
        line = b.original.line
        if b.error:  # the line itself is not shown: it may hold a secret
            issues.append(
                ConfigIssue(
                    str(path),
                    "",
                    "cannot parse this line; expected NAME=value (quote a value with spaces "
                    'or #: NAME="a b"; close every quote)',
                    line,
                )
            )
        elif b.key is not None and not _NAME.match(b.key):
            issues.append(
                ConfigIssue(
                    str(path),
                    b.key[:40],
                    "not a variable name: use letters, digits and _, not starting with a digit",
                    line,
                )
            )
        elif b.value is not None and "\x00" in b.value:
            issues.append(ConfigIssue(str(path), b.key or "", "a NUL byte in the value", line))
    if issues:
        raise ConfigurationError(issues)
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {k: v for k, v in values.items() if v is not None}


def _apply(values: Mapping[str, str]) -> set[str]:
    """Set the variables the environment does not have (the environment wins)."""
    loaded = set()
    for k, v in values.items():
        if k not in os.environ:
            os.environ[k] = v
            loaded.add(k)
    return loaded


def load_project_env(ctx: click.Context) -> None:
    """Read the project's ``.env``, once per command (interactive commands only)."""
    global _status
    obj = ctx.find_root().obj
    if obj is None or obj.get("dotenv_done"):
        return
    obj["dotenv_done"] = True
    config = Path(obj["config"])
    path = project_env_path(config)
    _status = EnvStatus(config=config, looked=path)
    if not os.path.lexists(path):
        return
    _status.loaded = _apply(read_env_file(path))
    _status.read = path
    if obj.get("state") is None and os.environ.get("INTEGRATOR_STATE"):
        obj["state"] = os.environ["INTEGRATOR_STATE"]


def load_env_file(ctx: click.Context, path: Path | None) -> None:
    """The daemon's: read ``path`` only when given (``--env-file``); never the project's."""
    global _status
    obj = ctx.find_root().obj
    config = Path(obj["config"])
    _status = EnvStatus(config=config, looked=project_env_path(config), daemon=True)
    if path is None:
        return
    _status.loaded = _apply(read_env_file(path))
    _status.read = path
    if obj.get("state") is None and os.environ.get("INTEGRATOR_STATE"):
        obj["state"] = os.environ["INTEGRATOR_STATE"]


def unset_hint(issues: list[ConfigIssue]) -> str | None:
    """What to do about the issues that are unset variables (None when there are none)."""
    names = list(dict.fromkeys(m.group(1) for i in issues if (m := _UNSET.search(i.message))))
    if not names:
        return None
    listed = ", ".join(names)
    st = _status
    if st is None:
        return f"not set: {listed}; export them"
    if st.daemon:
        text = (
            f"not set: {listed}. The daemon reads no .env file unless told: export them "
            "(systemd: Environment= or EnvironmentFile=), or pass --env-file PATH"
        )
        if st.read is not None:
            text = f"not set, in the environment or in {st.read}: {listed}; add them there"
        elif st.looked.is_file():
            text += f" ({st.looked} exists: --env-file {st.looked} reads it)"
        return text
    if st.read is not None:
        return (
            f"not set, in the environment or in {st.read}: {listed}; add them to {st.read} "
            "(NAME=value) or export them"
        )
    c = "" if st.config == Path("config.yaml") else f"-c {st.config} "
    return (
        f"not set: {listed}. To run against the sandbox: start `integrator {c}sandbox` in "
        f"another terminal (it writes {st.looked} with its values), then run this again. "
        f"Otherwise export them, or write them in {st.looked} (NAME=value)"
    )


def sandbox_env_report(
    config: Path, served: Mapping[str, str], public: Mapping[str, str]
) -> list[str]:
    """Write the sandbox's values to the project's ``.env`` when it has none; what to print.

    ``served``: the variables a runner aimed at the sandbox needs (its URLs and the
    credentials it accepts); ``public``: the sandbox's own test credentials. A credential the
    sandbox took from the environment (not its public one) is neither written nor shown.
    """

    path = project_env_path(config)
    own = {k: v for k, v in served.items() if k not in public}  # hosts and ports first
    own.update((k, v) for k, v in served.items() if k in public and public[k] == v)
    kept = sorted(k for k in served if k not in own)
    exports = [f"  export {k}={v}" for k, v in own.items()]
    if kept:
        exports.append(f"  ({', '.join(kept)}: as in your environment)")
    if not config.is_file():
        return [
            f"no {config} here: no {ENV_FILE} written (start the sandbox in the project's "
            "directory, or give -c); point the runner at the sandbox with:",
            *exports,
        ]
    if os.path.lexists(path):
        return [f"{path} exists: kept as it is (never overwritten)", *_compare(path, served)]
    body = [
        "# Written by `integrator sandbox`: the sandbox's values (local test servers, public",
        "# test credentials). Commands run in this directory read it; the environment wins.",
        "# Production secrets do not belong here: export them, or use ${file:path} in",
        "# config.yaml. Delete this file to have the sandbox write it again.",
        *(f"{k}={v}" for k, v in own.items()),
        *(f"# {k}: the sandbox uses the value in your environment" for k in kept),
    ]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # written meanwhile: still never overwritten
        return [f"{path} exists: kept as it is (never overwritten)", *_compare(path, served)]
    except OSError as exc:
        return [
            f"cannot write {path}: {exc.strerror}; the sandbox runs anyway. Point the runner "
            "at it with:",
            *exports,
        ]
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(body) + "\n")
    hosts = ", ".join(f"{k}={v}" for k, v in own.items() if k not in public)
    return [
        f"wrote {path} with the sandbox's values ({hosts} and its test credentials): "
        f"validate and run-flow in {path.parent.resolve()} read it, nothing to export",
    ]


def _compare(path: Path, served: Mapping[str, str]) -> list[str]:
    """Where what the runner would use differs from what the sandbox serves (URLs only:
    the sandbox took its credentials from the same environment)."""
    from integrator.connectors.redact import scrub_urls

    loaded = _status.loaded if _status is not None else set()
    out = []
    for k, v in served.items():
        if not k.endswith("_URL"):
            continue
        have = os.environ.get(k)
        if have is not None and have != v:
            where = path if k in loaded else "your environment"
            out.append(f"  {k} is {scrub_urls(have)} in {where}; this sandbox serves {v}")
    if out:
        out.insert(0, "the runner would not reach this sandbox:")
        out.append(f"  change it, or delete {path} and start the sandbox again")
    return out

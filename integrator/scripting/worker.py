"""A script worker process, started by :class:`integrator.scripting.pool.ScriptPool`.

The wire, in both directions: frames of a header (magic, call id, body length) and a JSON
body. Pickle is never used: a reply is data, and reading it cannot run code in the runner.
The runner gives every call a random 64-bit id; the worker echoes it in the reply's header.
The protocol runs on two pipes of their own (passed as fds, made close-on-exec), never on the
worker's stdin and stdout: fd 0 is /dev/null and fd 1 is stderr, so what a script prints or
writes to fd 1 shows up beside the runner's output. A process forked by a script closes the
protocol's fds (an at-fork hook) and, if it returns into the worker's loop, exits without
answering.

What crosses: JSON values (dicts, lists, strings, numbers, booleans, None; tuples arrive as
lists, and dict keys that are numbers, booleans or None as strings, as in any JSON body);
attributes as strings (``attribute_text``); the log as (level, text) pairs. NaN, Infinity,
bytes, sets, Decimal and other objects do not cross: such a result fails its call, named.

Each script is loaded once (again when its file changes). Only the standard library and the
compat shims are imported, so a worker starts fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import signal
import struct
import sys
import threading
import traceback
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

__all__ = [
    "HEADER",
    "MAGIC",
    "MAX_FRAME",
    "ProtocolError",
    "answer",
    "attribute_text",
    "decode",
    "describe_error",
    "encode",
    "handle",
    "main",
]

MAGIC = b"\xffIW1"  # not text: a stray print() cannot start a frame by chance
HEADER = struct.Struct("!4sQI")  # magic, call id, body length
MAX_FRAME = 256 * 1024 * 1024  # bytes of JSON either way
CROSSES = (
    "a result crosses to the runner as JSON: dicts, lists, strings, finite numbers, "
    "booleans and None"
)
SCRIPT_ERROR = "log.script.error"
ALIASES = {
    "request_data": "request",
    "response_data": "response",
}


class ProtocolError(Exception):
    """A frame that breaks the wire's rules."""


# Not ASCII-escaped: a lone surrogate ("\\ud800") must fail the UTF-8 encoding of its frame.
# Escaped, it would cross and reach the runner's log files and store, which cannot hold it.
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_no_constant)


def encode(call_id: int, value: Any) -> bytes:
    """One frame: TypeError, ValueError or RecursionError when ``value`` is not JSON (or
    the frame would be larger than MAX_FRAME)."""
    body = _encoder.encode(value).encode("utf-8")  # UnicodeEncodeError: a lone surrogate
    if len(body) > MAX_FRAME:
        raise ValueError(f"{len(body):,} bytes of JSON, more than the {MAX_FRAME:,} allowed")
    return HEADER.pack(MAGIC, call_id, len(body)) + body


def decode(body: bytes | bytearray | memoryview) -> Any:
    """A frame's body; ValueError (UnicodeDecodeError included) or RecursionError."""
    return _decoder.decode(str(body, "utf-8"))


def attribute_text(value: Any) -> str:
    """An attribute value as NiFi holds it: a string (None → "", booleans lower case)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_modules: dict[tuple[str, float], ModuleType] = {}
_codes: dict[tuple[str, float], CodeType] = {}


def describe_error(exc: BaseException, path: Path) -> str:
    """``ValueError: bad sku (enrich.py, line 12)``: the deepest frame in the script."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    if isinstance(exc, SystemExit):
        text = f"SystemExit: the script called sys.exit({exc.code!r})"
    elif isinstance(exc, MemoryError):
        text = "MemoryError: the script ran out of memory (the worker's limit)"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text + (f" ({path.name}, line {line})" if line else f" ({path.name})")


def _module(path: Path) -> ModuleType:
    key = (str(path), path.stat().st_mtime)
    if key not in _modules:
        spec = importlib.util.spec_from_file_location(f"integrator_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[key] = module
    return _modules[key]


def _code(path: Path) -> CodeType:
    key = (str(path), path.stat().st_mtime)
    if key not in _codes:
        _codes[key] = compile(path.read_bytes(), str(path), "exec")
    return _codes[key]


_params: dict[Any, tuple[str, ...]] = {}


def _native(call: dict[str, Any], path: Path, attributes: dict[str, str]) -> dict[str, Any]:
    func = getattr(_module(path), call["entry"])
    names = _params.get(func)
    if names is None:
        names = _params[func] = tuple(inspect.signature(func).parameters)
    args = call["args"]
    kwargs = {p: attributes if p == "attributes" else args.get(ALIASES.get(p, p)) for p in names}
    return {"result": func(**kwargs), "raw": None, "log": []}


def _compat(call: dict[str, Any], path: Path, attributes: dict[str, str]) -> dict[str, Any]:
    from integrator.scripting.compat import run_compat

    args = call["args"]
    if call["entry"] == "check_response":
        content: Any = {"request_data": args.get("request"), "response_data": args.get("response")}
    else:
        content = args.get("data")
    raw_in = json.dumps(content, ensure_ascii=False).encode("utf-8")
    out = run_compat(_code(path), raw_in, attributes)
    attributes.clear()
    attributes.update(out.attributes)
    reply: dict[str, Any] = {"log": out.log, "relationship": out.relationship}
    if out.output is None:
        reply.update(result=content, raw=None)
    else:
        text = out.output.decode("utf-8", "replace")
        try:
            reply.update(result=json.loads(text), raw=None)
        except ValueError:
            reply.update(result=None, raw=text)
    return reply


def handle(call: dict[str, Any]) -> dict[str, Any]:
    """Run one call; never raises for the script's own errors."""
    path = Path(call["path"])
    attributes: dict[str, str] = dict(call["attributes"])
    if call.get("order_is_data"):  # one object, as the runner holds it
        call["args"]["order"] = call["args"].get("data")
    try:
        run = _compat if call["runtime"] == "compat" else _native
        reply = run(call, path, attributes)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and MemoryError included
        detail = describe_error(exc, path)
        attributes[SCRIPT_ERROR] = detail
        return {"ok": False, "error": detail, "attributes": attributes, "log": []}
    rel = reply.get("relationship")
    if rel in ("failure", "removed"):
        detail = attributes.get(SCRIPT_ERROR) or (
            "the script transferred the flow file to REL_FAILURE"
            if rel == "failure"
            else "the script removed the flow file"
        )
        attributes[SCRIPT_ERROR] = detail
        return {"ok": False, "error": detail, "attributes": attributes, "log": reply["log"]}
    return {"ok": True, "attributes": attributes, **reply}


def _reply_of(reply: dict[str, Any]) -> dict[str, Any]:
    """What crosses back: JSON values; attributes as strings; the log as (level, text) pairs."""
    out: dict[str, Any] = {
        "ok": bool(reply.get("ok")),
        "attributes": {str(k): attribute_text(v) for k, v in reply["attributes"].items()},
        "log": [[str(level), str(text)] for level, text in reply.get("log") or []],
    }
    if out["ok"]:
        out["result"], out["raw"] = reply.get("result"), reply.get("raw")
    else:
        out["error"] = str(reply.get("error"))
    return out


def answer(call_id: int, reply: dict[str, Any]) -> bytes:
    """The frame of a reply; a result that cannot cross (not JSON, too large) becomes the
    call's failure, named, with the script's attributes and log kept."""
    try:
        return encode(call_id, _reply_of(reply))
    except Exception as exc:  # noqa: BLE001 - whatever a result's objects raise
        detail = (
            f"ValueError: the script's result cannot be sent back to the runner: {exc} ({CROSSES})"
        )
    attributes = {str(k): _text(v) for k, v in reply.get("attributes", {}).items()}
    detail = _text(detail)
    attributes[SCRIPT_ERROR] = detail
    log = [[_text(level), _text(text)] for level, text in reply.get("log") or []]
    return encode(call_id, {"ok": False, "error": detail, "attributes": attributes, "log": log})


def _text(value: Any) -> str:
    """A text that can cross whatever it holds (a lone surrogate shown as ``\\ud800``)."""
    try:
        text = attribute_text(value)
    except Exception:  # noqa: BLE001 - an object whose str() raises
        return f"<{type(value).__name__} that cannot be shown>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ------------------------------------------------------------------ the worker's side of the wire
_owner = 0  # the worker's pid: a process forked by a script is not the worker
_wire: tuple[int, ...] = ()  # the protocol's fds (calls in, replies out)


def _forked() -> None:
    """In a child forked by a script: the protocol's fds are the worker's, not the child's."""
    for fd in _wire:
        with contextlib.suppress(OSError):
            os.close(fd)


def _not_the_worker() -> bool:
    return os.getpid() != _owner


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes; None at end of file before the first."""
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            if left == n:
                return None
            raise ProtocolError("the runner's call ended mid-frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_call(fd: int) -> tuple[int, dict[str, Any] | None] | None:
    """The next call (None as the call when its body cannot be read); None at the end."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    magic, call_id, size = HEADER.unpack(header)
    if magic != MAGIC or size > MAX_FRAME:
        raise ProtocolError("the runner's call is not a frame")
    body = _read_exact(fd, size) if size else b""
    if body is None:
        raise ProtocolError("the runner's call ended mid-frame")
    try:
        call = decode(body)
    except (ValueError, RecursionError):
        return call_id, None
    return call_id, call if isinstance(call, dict) else None


_UNREADABLE = {
    "ok": False,
    "error": "ValueError: the worker could not read the order's data (JSON nested too deep?)",
    "attributes": {},
    "log": [],
}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _watch(fd: int) -> None:
    """Block on the runner's lifeline; at its end (the runner is gone, even by SIGKILL) kill
    this worker's process group: the worker and whatever its script started."""
    try:
        while os.read(fd, 1):
            pass  # the runner never writes: only the end of the pipe matters
    except OSError:
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> None:
    """Serve calls until the runner closes the call pipe (or its lifeline ends).

    argv: memory limit (MB), lifeline fd, call fd (read), reply fd (write). Every fd is made
    close-on-exec, so nothing a script runs inherits them; fd 0 is /dev/null and fd 1 is
    stderr, so a script's prints and writes to fd 1 never reach the protocol.
    """
    global _owner, _wire
    memory_mb, line, calls, replies = (int(a) for a in sys.argv[1:5])
    for fd in (line, calls, replies):
        os.set_inheritable(fd, False)
    _owner, _wire = os.getpid(), (calls, replies)
    os.register_at_fork(after_in_child=_forked)
    threading.Thread(target=_watch, args=(line,), daemon=True).start()
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.dup2(2, 1)  # a script's print() and os.write(1, ...) go to stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 - fd 0 is /dev/null too (the pool's stdin)
    try:
        while True:
            got = _read_call(calls)
            if got is None:  # the pool closed us: what our scripts started ends with us
                break
            call_id, call = got
            reply = handle(call) if call is not None else _UNREADABLE
            if _not_the_worker():  # a script's fork returned into this loop: it never answers
                os._exit(0)
            _write_all(replies, answer(call_id, reply))
    except (OSError, ProtocolError, ValueError):
        pass  # the runner went away or broke the protocol: end as if closed
    finally:
        if not _not_the_worker():
            os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(0)


if __name__ == "__main__":
    main()

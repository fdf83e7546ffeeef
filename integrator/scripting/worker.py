"""A script worker process, started by :class:`integrator.scripting.pool.ScriptPool`.

Reads length-prefixed pickled calls on stdin, answers on the original stdout; what a script
prints goes to stderr. Each script is loaded once (again when its file changes). Only the
standard library and the compat shims are imported, so a worker starts fast.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any, BinaryIO

__all__ = ["describe_error", "handle", "main"]

HEADER = struct.Struct("!I")
SCRIPT_ERROR = "log.script.error"
ALIASES = {
    "request_data": "request",
    "response_data": "response",
}

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


def _read(stream: BinaryIO) -> Any:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    return pickle.loads(stream.read(size))


def _write(stream: BinaryIO, obj: Any) -> None:
    try:
        data = pickle.dumps(obj, protocol=5)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be sent back
        data = pickle.dumps(
            {"ok": False, "error": f"the script's result cannot be sent back: {exc}"}, protocol=5
        )
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


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
    """Serve calls until stdin closes (or the runner's lifeline ends)."""
    if len(sys.argv) > 2:
        threading.Thread(target=_watch, args=(int(sys.argv[2]),), daemon=True).start()
    if len(sys.argv) > 1 and int(sys.argv[1]) > 0:
        import resource

        limit = int(sys.argv[1]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a script's print() goes to stderr, never into the protocol
    sys.stdin = open(os.devnull)  # noqa: SIM115 - scripts must not read the protocol
    while True:
        call = _read(proto_in)
        if call is None:  # the pool closed us: what our scripts started ends with us
            os.killpg(os.getpgrp(), signal.SIGKILL)
        _write(proto_out, handle(call))


if __name__ == "__main__":
    main()

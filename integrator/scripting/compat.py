"""The Akinon Integrator / NiFi ExecuteScript compat runtime, on CPython 3.

A compat script is module-level code run once per order (as ExecuteScript runs its body per
flow file) with these globals:

- ``session``: ``get()`` (the order's flow file, then ``None``), ``putAttribute(flowFile, key,
  value)`` or ``putAttribute(key, value)``, ``putAllAttributes``, ``getAttribute``,
  ``removeAttribute``, ``write(flowFile, callback)``, ``read(flowFile, callback)``,
  ``transfer(flowFile, REL_SUCCESS | REL_FAILURE)``, ``remove``;
- ``REL_SUCCESS``, ``REL_FAILURE``, ``log`` (``info``/``warn``/``error``/``debug``);
- the simple form: ``input_text`` (the content as text), ``outputStream.write(...)``,
  ``get_attribute(key)``.

``from org.apache.commons.io import IOUtils``, ``from java.nio.charset import
StandardCharsets`` and ``from org.apache.nifi.processor.io import StreamCallback`` (also
``InputStreamCallback``, ``OutputStreamCallback``) import shims. Attribute values are strings,
as in NiFi.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

from integrator.scripting.worker import attribute_text

__all__ = ["CompatResult", "attribute_text", "install_shims", "run_compat"]

REL_SUCCESS = "success"
REL_FAILURE = "failure"


class InputStream:
    """The flow file's content, readable once or many times."""

    def __init__(self, content: bytes) -> None:
        self._content, self._pos = content, 0

    def read(self, n: int = -1) -> bytes:
        """Bytes from the current position (all when ``n`` < 0)."""
        end = len(self._content) if n < 0 else min(len(self._content), self._pos + n)
        chunk = self._content[self._pos : end]
        self._pos = end
        return chunk

    def readAllBytes(self) -> bytes:
        """The rest of the content."""
        return self.read()

    def close(self) -> None:
        """Nothing to release."""


class OutputStream:
    """Collects what a script writes; ``str`` is encoded as UTF-8."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.written = False

    def write(self, data: Any, *_: Any) -> None:
        """Append ``data`` (bytes, bytearray, str, or a list of ints as Jython allowed)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif isinstance(data, list):
            data = bytes(b & 0xFF for b in data)
        self.chunks.append(bytes(data))
        self.written = True

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing to release."""

    def value(self) -> bytes:
        """Everything written."""
        return b"".join(self.chunks)


class IOUtils:
    """``org.apache.commons.io.IOUtils``: the calls scripts make."""

    @staticmethod
    def toString(stream: InputStream, charset: Any = "utf-8") -> str:
        """The stream's content decoded."""
        return stream.read().decode(_charset(charset))

    @staticmethod
    def toByteArray(stream: InputStream) -> bytes:
        """The stream's content."""
        return stream.read()

    @staticmethod
    def write(data: Any, stream: OutputStream, charset: Any = "utf-8") -> None:
        """Write text or bytes."""
        stream.write(data.encode(_charset(charset)) if isinstance(data, str) else data)


class _Charset:
    def __init__(self, name: str) -> None:
        self.name = name

    def name_(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


class StandardCharsets:
    """``java.nio.charset.StandardCharsets``."""

    UTF_8 = _Charset("utf-8")
    ISO_8859_1 = _Charset("iso-8859-1")
    US_ASCII = _Charset("ascii")
    UTF_16 = _Charset("utf-16")


def _charset(value: Any) -> str:
    return value.name if isinstance(value, _Charset) else str(value or "utf-8")


class StreamCallback:
    """Base class of ``TransformCallback``: ``process(self, inputStream, outputStream)``."""

    def process(self, inputStream: InputStream, outputStream: OutputStream) -> None:
        """Overridden by the script."""


class InputStreamCallback:
    """``process(self, inputStream)``, for ``session.read``."""

    def process(self, inputStream: InputStream) -> None:
        """Overridden by the script."""


class OutputStreamCallback:
    """``process(self, outputStream)``, for ``session.write`` without reading."""

    def process(self, outputStream: OutputStream) -> None:
        """Overridden by the script."""


@dataclass
class FlowFile:
    """The order travelling through the script: content and string attributes."""

    content: bytes
    attributes: dict[str, str]

    def getAttribute(self, key: str) -> str | None:
        """An attribute's value, or None."""
        return self.attributes.get(key)

    def getAttributes(self) -> dict[str, str]:
        """A copy of every attribute."""
        return dict(self.attributes)

    def getSize(self) -> int:
        """The content's length in bytes."""
        return len(self.content)


class Session:
    """The ``session`` global; one flow file per call."""

    def __init__(self, flow_file: FlowFile) -> None:
        self.flow_file = flow_file
        self._given = False
        self.relationship: str | None = None
        self.output: bytes | None = None

    def get(self, *_: Any) -> FlowFile | None:
        """The order's flow file the first time, then None (the queue is empty)."""
        if self._given:
            return None
        self._given = True
        return self.flow_file

    def create(self, *_: Any) -> FlowFile:
        """The same flow file: one order in, one order out."""
        return self.flow_file

    def putAttribute(self, *args: Any) -> FlowFile:
        """``putAttribute(flowFile, key, value)``, or the simple ``putAttribute(key, value)``."""
        key, value = (args[1], args[2]) if len(args) == 3 else (args[0], args[1])
        self.flow_file.attributes[str(key)] = attribute_text(value)
        return self.flow_file

    def putAllAttributes(self, flow_file: FlowFile, values: dict[str, Any]) -> FlowFile:
        """Set several attributes."""
        for k, v in values.items():
            self.flow_file.attributes[str(k)] = attribute_text(v)
        return flow_file

    def getAttribute(self, *args: Any) -> str | None:
        """``getAttribute(flowFile, key)`` or ``getAttribute(key)``."""
        return self.flow_file.attributes.get(str(args[-1]))

    def removeAttribute(self, flow_file: FlowFile, key: str) -> FlowFile:
        """Drop an attribute."""
        self.flow_file.attributes.pop(key, None)
        return flow_file

    def write(self, flow_file: FlowFile, callback: Any) -> FlowFile:
        """Run a StreamCallback (or OutputStreamCallback) over the content; keep its output."""
        out = OutputStream()
        if isinstance(callback, OutputStreamCallback):
            callback.process(out)
        else:
            callback.process(InputStream(flow_file.content), out)
        flow_file.content = out.value()
        self.output = flow_file.content
        return flow_file

    def read(self, flow_file: FlowFile, callback: Any) -> None:
        """Run an InputStreamCallback over the content."""
        callback.process(InputStream(flow_file.content))

    def transfer(self, flow_file: FlowFile, relationship: Any = REL_SUCCESS) -> None:
        """Route the flow file: REL_SUCCESS goes on, REL_FAILURE fails the order."""
        self.relationship = str(relationship)

    def remove(self, flow_file: FlowFile) -> None:
        """Dropping the order is a failure here: the runner must account for every order."""
        self.relationship = "removed"

    def commit(self) -> None:
        """Nothing to commit: the runner records the result."""

    def penalize(self, flow_file: FlowFile) -> FlowFile:
        """No-op: retries are the runner's business."""
        return flow_file


class ScriptLog:
    """NiFi's ``log`` global: messages are kept and returned with the result."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def _add(self, level: str, msg: Any, *args: Any) -> None:
        text = str(msg)
        for a in args:  # NiFi's {} placeholders
            text = text.replace("{}", str(a), 1)
        self.messages.append((level, text))

    def info(self, msg: Any, *args: Any) -> None:
        """Log at info."""
        self._add("info", msg, *args)

    def warn(self, msg: Any, *args: Any) -> None:
        """Log at warning."""
        self._add("warning", msg, *args)

    warning = warn

    def error(self, msg: Any, *args: Any) -> None:
        """Log at error."""
        self._add("error", msg, *args)

    def debug(self, msg: Any, *args: Any) -> None:
        """Log at debug."""
        self._add("debug", msg, *args)

    trace = debug


_SHIMS: dict[str, dict[str, Any]] = {
    "org.apache.commons.io": {"IOUtils": IOUtils},
    "java.nio.charset": {"StandardCharsets": StandardCharsets},
    "org.apache.nifi.processor.io": {
        "StreamCallback": StreamCallback,
        "InputStreamCallback": InputStreamCallback,
        "OutputStreamCallback": OutputStreamCallback,
    },
}


def install_shims() -> None:
    """Make the Java imports of ExecuteScript scripts resolve (idempotent)."""
    for dotted, names in _SHIMS.items():
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                module = types.ModuleType(name)
                module.__path__ = []  # a package, so submodules import
                sys.modules[name] = module
                if i > 1:
                    setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], module)
        for attr, value in names.items():
            setattr(sys.modules[dotted], attr, value)


@dataclass
class CompatResult:
    """What one compat call produced."""

    output: bytes | None  # None: the content was not rewritten
    attributes: dict[str, str]
    relationship: str | None
    log: list[tuple[str, str]] = field(default_factory=list)


def run_compat(code: types.CodeType, content: bytes, attributes: dict[str, str]) -> CompatResult:
    """Run a compiled compat script once over ``content``; exceptions propagate."""
    install_shims()
    flow_file = FlowFile(content, dict(attributes))
    session = Session(flow_file)
    out = OutputStream()
    log = ScriptLog()
    scope: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "session": session,
        "REL_SUCCESS": REL_SUCCESS,
        "REL_FAILURE": REL_FAILURE,
        "log": log,
        "input_text": content.decode("utf-8"),
        "outputStream": out,
        "get_attribute": flow_file.getAttribute,
        "IOUtils": IOUtils,
        "StandardCharsets": StandardCharsets,
        "StreamCallback": StreamCallback,
    }
    exec(code, scope)
    output = out.value() if out.written else session.output
    return CompatResult(output, flow_file.attributes, session.relationship, log.messages)

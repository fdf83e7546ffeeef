"""structlog configured in one place: console for the CLI, JSON lines for the daemon.

structlog (with the rich and asyncio modules it loads) is a third of the start of a command that
logs nothing, such as ``validate``: ``configure_logging`` applies the configuration at once when
structlog is loaded, and otherwise when it is first imported, by anyone (a one-shot import
hook), so that no event is ever rendered by an unconfigured structlog, past the redactor.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Iterable, MutableMapping, Sequence
from types import ModuleType
from typing import Any

from integrator.connectors.redact import Redactor

__all__ = ["configure_logging", "learn_secrets", "route_library_logs"]

_redactor = Redactor()  # the one every log event passes; configure_logging teaches it


def learn_secrets(secrets: Iterable[str]) -> None:
    """Mask these values in every later log event too (a reloaded project's secrets, those
    of its flow files)."""
    _redactor.add(secrets)


def _redacting(redactor: Redactor) -> Any:
    def processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        return redactor.redact(dict(event))

    return processor


def _without_traceback(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """The console shows an internal error's type and message; its traceback is in the run's
    log file (and on the console with --debug)."""
    exc_info = event.pop("exc_info", None)
    if exc_info:
        exc = exc_info[1] if isinstance(exc_info, tuple) else sys.exc_info()[1]
        if exc is not None:
            event.setdefault("error", f"{type(exc).__name__}: {exc}")
        event["traceback"] = "in the run log; --debug shows it here"
    return event


def configure_logging(
    level: str = "INFO",
    *,
    json: bool = False,
    secrets: Iterable[str] = (),
    tracebacks: bool = False,
) -> None:
    """Route structlog to stderr; every event passes the redactor first (known secrets, URL
    credentials, secret-named keys). Tracebacks: in JSON (the daemon's logs, as a field), on
    the console only with ``tracebacks`` (--debug); as plain text, without local variables.
    Applied now if structlog is loaded, else when it is first imported."""
    global _settings
    learn_secrets(secrets)
    level_no = logging.getLevelNamesMapping()[level.upper()]  # a bad level fails here, now
    _settings = {"level": level_no, "json": json, "tracebacks": tracebacks}
    if "structlog" in sys.modules:
        _apply()
    elif not any(isinstance(f, _ConfigureOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureOnImport())


_settings: dict[str, Any] | None = None  # the last configure_logging's, until structlog loads


def _apply() -> None:
    import structlog

    if _settings is None:
        return
    json, tracebacks = _settings["json"], _settings["tracebacks"]
    # A traceback is rendered to text before the redactor sees it, never by the console
    # renderer afterwards: rich's tracebacks show every frame's local variables (headers,
    # tokens, connection settings), and would print them past the redactor.
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    exceptions: Any = (
        structlog.processors.format_exc_info if json or tracebacks else _without_traceback
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            exceptions,
            _redacting(_redactor),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_settings["level"]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class _ConfigureOnImport(importlib.abc.MetaPathFinder):
    """Applies the pending configuration as soon as the module ``structlog`` has run, before
    its importer gets it; then leaves ``sys.meta_path``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "structlog":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader

        class Configuring(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
                return loader.create_module(spec)

            def exec_module(self, module: ModuleType) -> None:
                module.__loader__ = loader  # the module keeps its own loader
                if module.__spec__ is not None:
                    module.__spec__.loader = loader
                loader.exec_module(module)
                _apply()

        spec.loader = Configuring()
        return spec


class _LibraryRecords(logging.Handler):
    """A library's stdlib log records as structlog events, so that they are JSON lines with
    the rest and never written to stderr beside them (a line written by another writer can
    split a JSON line in two)."""

    def __init__(self, event: str, demoted: frozenset[str]) -> None:
        super().__init__()
        self.event, self.demoted = event, demoted

    def emit(self, record: logging.LogRecord) -> None:
        level = logging.DEBUG if record.name in self.demoted else record.levelno
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        fields: dict[str, Any] = {"message": message, "logger": record.name}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
            if level >= logging.ERROR:
                fields["exc_info"] = record.exc_info
        import structlog

        structlog.get_logger(record.name).log(level, self.event, **fields)


def route_library_logs(
    name: str, event: str, *, level: int = logging.INFO, demoted: Iterable[str] = ()
) -> None:
    """Send the stdlib logger ``name`` (and its children) to structlog as ``event`` events
    from ``level`` on; records of the loggers in ``demoted`` at debug level. Idempotent."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if isinstance(handler, _LibraryRecords):
            logger.removeHandler(handler)
    logger.addHandler(_LibraryRecords(event, frozenset(demoted)))
    logger.propagate = False
    logger.setLevel(level)

"""structlog configured in one place: console for the CLI, JSON lines for the daemon."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from integrator.connectors.redact import Redactor

__all__ = ["configure_logging"]


def _redacting(redactor: Redactor) -> Any:
    def processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        return redactor.redact(dict(event))

    return processor


def configure_logging(
    level: str = "INFO", *, json: bool = False, secrets: Iterable[str] = ()
) -> None:
    """Route structlog to stderr; every event passes the redactor first."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            _redacting(Redactor(secrets)),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )

"""Exceptions grouped by what the runner must do with them.

::

    IntegratorError
     ├── ConfigurationError      bad config/flow/script/spec: fix the files (exit status 2)
     ├── UserError               the user's doing, outside the files: a port in use, a file
     │                           missing or unreadable (exit status 2)
     ├── FatalError              the run cannot go on (store unreachable, source unreadable)
     │    └── SystemicError      the system, not the order: the run stops, no order charged
     │         ├── AuthenticationError  401/403 after a fresh login, a refused login
     │         └── CircuitOpen   one connector failed the same way for N orders in a row
     ├── OrderError              this order fails; the others go on
     │    ├── RetriableError     timeouts, 5xx, 408, 429: retried on the next run
     │    │    └── UnreadableAnswer  not JSON, too large or too deep: the server's fault
     │    ├── AmbiguousWriteError the ERP may or may not have the order: settle before resending
     │    └── PermanentError     other 4xx, script or mapping errors: back off, then quarantine
     └── SkipOrder               not a failure: the order is not due (backoff, quarantine)

Messages never carry secrets: HTTP errors name the method, the URL path and the status only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AmbiguousWriteError",
    "AuthenticationError",
    "CircuitOpen",
    "ConfigIssue",
    "ConfigurationError",
    "ErpRefused",
    "FatalError",
    "IntegratorError",
    "OrderError",
    "PermanentError",
    "RetriableError",
    "SessionExpired",
    "SkipOrder",
    "SystemicError",
    "UnreadableAnswer",
    "UserError",
]


class IntegratorError(Exception):
    """Root of every error the runner raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a configuration file: where, and what to do."""

    file: str
    key: str
    message: str
    line: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        key = f" [{self.key}]" if self.key else ""
        return f"{where}{key}: {self.message}"


@dataclass
class ConfigurationError(IntegratorError):
    """One or more configuration problems, reported together."""

    issues: list[ConfigIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues) or "invalid configuration"


class UserError(IntegratorError):
    """Something the user caused and can fix, outside the configuration's content: a port in
    use, a file missing, unreadable or not UTF-8. The message says what to do (exit status 2;
    only real bugs are "internal errors")."""


class FatalError(IntegratorError):
    """The run cannot continue (authentication refused, state store unreachable)."""


class SystemicError(FatalError):
    """A failure of the system rather than of one order: the run stops and no order is
    charged an attempt. ``connector`` names the connector at fault."""

    def __init__(self, message: str, *, connector: str = "") -> None:
        super().__init__(message)
        self.connector = connector


class AuthenticationError(SystemicError):
    """A connector's credentials were refused (401/403 after one fresh login, or a login)."""


class CircuitOpen(SystemicError):
    """A connector failed the same way for ``threshold`` orders in a row."""


class OrderError(IntegratorError):
    """This order failed; the run goes on with the others."""

    kind = "error"

    def __init__(self, message: str, *, stage: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.status = status
        # Set by the connector for failures of the system (timeouts, refused connections,
        # 5xx): which connector, and what class of failure, for the circuit breaker.
        self.connector = ""
        self.failure = ""


class RetriableError(OrderError):
    """A transient failure: retried by the connector's policy, then on the next run.

    ``reached``: the request may have reached the server (False: proven not sent, or refused
    unprocessed, as a 429 is). ``retry_after``: seconds the server asked to wait.
    """

    kind = "retriable"

    def __init__(
        self,
        message: str,
        *,
        stage: str = "",
        status: int | None = None,
        reached: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, stage=stage, status=status)
        self.reached, self.retry_after = reached, retry_after


class UnreadableAnswer(RetriableError):
    """An answer that cannot be read (not JSON, too large, too deep, not UTF-8, NaN): the
    server's failure, not the order's (an ERP's maintenance page answers every call so)."""


class AmbiguousWriteError(OrderError):
    """The write may have reached the ERP: the order stays `sending` until settled."""

    kind = "ambiguous"


class PermanentError(OrderError):
    """A failure that will repeat until something changes: back off, then quarantine."""

    kind = "permanent"


class ErpRefused(PermanentError):
    """The ERP's answer says no by the stage's answer rules (or a SOAP client Fault): nothing
    was created, so a resend is safe; its message holds the ERP's own words."""


class SessionExpired(PermanentError):
    """The ERP's answer says the session is gone (an answer rule): log in again, once."""


class SkipOrder(IntegratorError):
    """The order is not processed this run, without counting as a failure."""
